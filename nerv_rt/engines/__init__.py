"""Backends behind one interface: an `Engine` runs one graph; a `Backend` makes engines and moves arrays.

Backends: torch (eager, CPU/GPU), torch-cudagraph (GPU; the runtime captures the whole sampling
loop), onnxruntime (CPU / CUDA EP, IO binding), tensorrt (TRT 10 engines, GPU). `auto` picks the
fastest one available for the source. Only the torch and tensorrt modules import torch.
"""
from .base import BACKENDS, Backend, Engine, open_backend

__all__ = ["BACKENDS", "Backend", "Engine", "open_backend"]
