"""Backend selection: which backend `auto` means for a source on this machine, and opening one.

Lives apart from base.py so that the interface imports none of its implementations. Importing this
module imports no backend (and no torch); each backend is imported when it is opened.
"""
from __future__ import annotations

import importlib.util

from ..errors import NervError, missing_extra, setting, warn
from ..machine import nvidia_driver
from ..runtime.sources import ModelSource
from .base import Backend

BACKENDS = ("auto", "torch", "torch-cudagraph", "onnxruntime", "tensorrt", "aoti")
DEVICES = ("auto", "cpu", "cuda")
TORCH_BACKENDS = ("torch", "torch-cudagraph")


def installed(module: str) -> bool:
    """Whether `module` can be imported (an import blocked or broken counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_cuda() -> bool:
    """A CUDA GPU that torch can use (False without torch, or without an NVIDIA driver: torch not imported then)."""
    if not nvidia_driver() or not installed("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_backend(name: str, source: ModelSource, device: str = "auto", precision: str = "fp32") -> str:
    """The concrete backend for `name` (maybe 'auto') and this source on this machine.

    auto: tensorrt when engines are built for this GPU; aoti when the source holds AOTInductor packages
    compiled for this machine; torch-cudagraph for a checkpoint on a CUDA GPU; onnxruntime for exported
    graphs; torch for a checkpoint alone."""
    if name not in BACKENDS:
        raise NervError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise NervError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if name != "auto":
        return name
    gpu = device != "cpu" and torch_cuda()
    if source.has_graphs and gpu:
        from .trt_backend import engines_ready

        if engines_ready(source, precision):
            return "tensorrt"
        built = [p for p in ("fp16", "bf16", "fp32") if p != precision and engines_ready(source, p)]
        if built:  # `build` picks fp16 where the export has it; generation runs fp32 unless told
            warn(f"{source.path} has TensorRT engines at {' and '.join(built)}, not {precision}: pass "
                 f"{setting('precision', built[0])} to run them")
    if source.has_graphs and source.manifest.get("aoti") and installed("torch"):
        from .aoti_backend import packages_ready

        if packages_ready(source, "cuda" if gpu else "cpu", precision):
            return "aoti"
    if source.has_checkpoint and gpu:
        return "torch-cudagraph"
    return "onnxruntime" if source.has_graphs else "torch"


def open_backend(name: str, source: ModelSource, device: str = "auto", precision: str = "fp32",
                 cuda_graph: bool | None = None) -> Backend:
    """Load `source` on the named backend ('auto' picks). Errors say how to get a usable source.

    cuda_graph: capture the sampling loop as CUDA graphs. None = the backend's default: on for
    torch-cudagraph, tensorrt and aoti on CUDA (whole loop), off for onnxruntime (its own per-graph
    option, opt-in)."""
    name = resolve_backend(name, source, device, precision)
    if name in TORCH_BACKENDS or name == "aoti":
        if not installed("torch"):
            raise missing_extra("torch")
    if name in TORCH_BACKENDS:
        if not source.has_checkpoint:
            raise NervError(f"{source.path} holds exported graphs only; the {name} backend runs checkpoints "
                            f"(use {setting('backend', 'onnxruntime')}, tensorrt or aoti)")
        if cuda_graph and name == "torch":  # it would be ignored: the torch backend runs step by step
            raise NervError(f"{setting('cuda_graph')} is for CUDA graphs on a GPU (torch-cudagraph, tensorrt, aoti, "
                            "onnxruntime's CUDA EP); the torch backend runs step by step")
        from .torch_backend import TorchBackend

        return TorchBackend(source, device, precision, capture=name == "torch-cudagraph" and cuda_graph is not False)
    if not source.has_graphs:
        raise NervError(f"the {name} backend runs exported graphs; run `nerv-rt export {source.origin}"
                        f"{' --aoti' if name == 'aoti' else ''}` first and pass the export folder")
    if name == "onnxruntime":
        from .ort_backend import OrtBackend

        return OrtBackend(source, device, precision, cuda_graph=bool(cuda_graph))
    if name == "aoti":
        from .aoti_backend import AotiBackend

        return AotiBackend(source, device, precision, capture=cuda_graph is not False)
    from .trt_backend import TrtBackend

    return TrtBackend(source, device, precision, capture=cuda_graph is not False)
