"""The engine interface and backend selection (torch-free)."""
from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np

from ..errors import NervError
from ..export.specs import GraphSpec
from ..runtime.sources import ModelSource

Array = Any  # numpy.ndarray (onnxruntime) or torch.Tensor (torch, tensorrt)
BACKENDS = ("auto", "torch", "torch-cudagraph", "onnxruntime", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")


class Engine(Protocol):
    """One graph on one backend. Outputs may be engine-owned buffers, valid until the next call."""

    spec: GraphSpec

    def __call__(self, **inputs: Array) -> dict[str, Array]: ...


class Backend(ABC):
    name: str
    device: str  # "cpu" | "cuda"
    can_capture: bool = False  # the runtime may capture the whole sampling loop as one CUDA graph
    cuda_graph: bool = False  # the backend replays its own per-graph CUDA graphs (ONNX Runtime's option)
    can_refine: bool = False  # has autograd through the decoder, for token refinement

    @abstractmethod
    def engine(self, graph: str) -> Engine: ...

    @abstractmethod
    def asarray(self, a: np.ndarray) -> Array:
        """Host array -> this backend's array type and device."""

    @abstractmethod
    def numpy(self, a: Array) -> np.ndarray:
        """This backend's array -> host numpy array."""

    def synchronize(self) -> None:  # noqa: B027 - a no-op by default: CPU backends have no queue
        """Wait for queued device work (timing)."""

    def refine_tokens(self, tokens: Array, video: Array, steps: int) -> Array:
        """Tokens (n, N, d_z) after `steps` Adam steps against the decoder on `video` (n, T, 3, H, W)
        (models/refine.py). Needs autograd: only the torch backends have it."""
        raise NervError(f"token refinement needs autograd, which the {self.name} backend lacks; "
                        "use a checkpoint with --backend torch, or --refine-steps 0")


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def resolve_backend(name: str, source: ModelSource) -> str:
    """The concrete backend for `name` (maybe 'auto') and this kind of source."""
    if name not in BACKENDS:
        raise NervError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    if name != "auto":
        return name
    if source.kind == "checkpoint":
        return "torch-cudagraph" if _torch_cuda() else "torch"
    from .trt_backend import engines_ready

    return "tensorrt" if engines_ready(source) else "onnxruntime"


def open_backend(name: str, source: ModelSource, device: str = "auto", precision: str = "fp32",
                 cuda_graph: bool | None = None) -> Backend:
    """Load `source` on the named backend ('auto' picks). Errors say how to get a usable source.

    cuda_graph: capture the sampling loop as CUDA graphs. None = the backend's default: on for
    torch-cudagraph and tensorrt (whole loop), off for onnxruntime (its own per-graph option, opt-in)."""
    if device not in DEVICES:
        raise NervError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    name = resolve_backend(name, source)
    if name in ("torch", "torch-cudagraph"):
        if source.kind != "checkpoint":
            raise NervError(f"{source.path} is an export folder; the {name} backend runs checkpoints "
                            "(use --backend onnxruntime or tensorrt)")
        from .torch_backend import TorchBackend

        return TorchBackend(source, device, precision, capture=name == "torch-cudagraph" and cuda_graph is not False)
    if source.kind != "export":
        raise NervError(f"the {name} backend runs exported graphs; run `nerv-rt export {source.path}` "
                        "first and pass the export folder")
    if name == "onnxruntime":
        from .ort_backend import OrtBackend

        return OrtBackend(source, device, cuda_graph=bool(cuda_graph))
    from .trt_backend import TrtBackend

    return TrtBackend(source, device, capture=cuda_graph is not False)
