"""Backends behind one interface: an `Engine` runs one graph; a `Backend` makes engines and moves arrays.

Backends: torch (eager, CPU/GPU), torch-cudagraph (GPU; the runtime captures the whole sampling
loop), onnxruntime (CPU / CUDA EP, IO binding), tensorrt (TensorRT 10.12+ / 11 engines, GPU) and aoti
(AOTInductor packages, CPU / GPU). `auto` picks the fastest one available for the source (select.py).
Only the torch, tensorrt and aoti modules import torch.
"""
from .base import Backend, Engine
from .select import BACKENDS, DEVICES, open_backend, resolve_backend

__all__ = ["BACKENDS", "DEVICES", "Backend", "Engine", "open_backend", "resolve_backend"]
