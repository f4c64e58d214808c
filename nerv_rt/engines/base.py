"""The engine interface every backend implements (torch-free; imports none of the backends)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np

from ..errors import NervError, setting
from ..export.specs import GraphSpec

Array = Any  # numpy.ndarray (onnxruntime) or torch.Tensor (torch, tensorrt, aoti)


class Engine(Protocol):
    """One graph on one backend. Outputs may be engine-owned buffers, valid until the next call."""

    spec: GraphSpec

    def __call__(self, **inputs: Array) -> dict[str, Array]: ...


class Backend(ABC):
    name: str
    device: str  # "cpu" | "cuda"
    precision: str = "fp32"  # what its graphs compute in (fp32 | fp16 | bf16)
    can_capture: bool = False  # the runtime may capture the whole sampling loop as one CUDA graph
    cuda_graph: bool = False  # the backend replays its own per-graph CUDA graphs (ONNX Runtime's option)
    can_refine: bool = False  # has autograd through the decoder, for token refinement
    max_batch: int | None = None  # most videos per DiT call (with CFG the DiT runs twice that); None: any
    max_frames: int | None = None  # most frames per decoder call; None: any

    @abstractmethod
    def engine(self, graph: str) -> Engine: ...

    @abstractmethod
    def asarray(self, a: np.ndarray) -> Array:
        """Host array -> this backend's array type and device."""

    @abstractmethod
    def numpy(self, a: Array) -> np.ndarray:
        """This backend's array -> host numpy array."""

    def concat(self, arrays: list[Array]) -> Array:
        """Join arrays of this backend's type along the first axis."""
        return np.concatenate(arrays)

    def synchronize(self) -> None:  # noqa: B027 - a no-op by default: CPU backends have no queue
        """Wait for queued device work (timing)."""

    def refine_tokens(self, tokens: Array, video: Array, steps: int) -> Array:
        """Tokens (n, N, d_z) after `steps` Adam steps against the decoder on `video` (n, T, 3, H, W)
        (models/refine.py). Needs autograd: only the torch backends have it."""
        raise NervError(f"token refinement needs autograd, which the {self.name} backend lacks; use a checkpoint "
                        f"with {setting('backend', 'torch')}, or {setting('refine_steps', 0)}")
