"""PyTorch eager backend (CPU or CUDA); with capture=True the runtime graphs the whole sampling loop."""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..checkpoint import build_models
from ..errors import NervError
from ..export.specs import GraphSpec, graph_specs
from ..models.graphs import graph_modules
from ..models.refine import refine_tokens
from ..runtime.frames import frame_times
from ..runtime.sources import ModelSource
from .base import Backend

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine:
    def __init__(self, spec: GraphSpec, module: torch.nn.Module, autocast_dtype: torch.dtype | None):
        self.spec, self.module, self.autocast_dtype = spec, module, autocast_dtype

    @torch.no_grad()
    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        ctx = (torch.autocast("cuda", dtype=self.autocast_dtype) if self.autocast_dtype
               else contextlib.nullcontext())
        with ctx:
            out = self.module(*(inputs[n] for n in self.spec.input_names))
        return {self.spec.output_names[0]: out.float()}


class TorchBackend(Backend):
    can_refine = True

    def __init__(self, source: ModelSource, device: str = "auto", precision: str = "fp32", capture: bool = False):
        cuda = torch.cuda.is_available()
        if device == "auto":
            device = "cuda" if cuda else "cpu"
        if device == "cuda" and not cuda:
            raise NervError("--device cuda: no CUDA GPU is available to torch")
        if capture and device != "cuda":
            raise NervError("the torch-cudagraph backend needs a CUDA GPU (use --backend torch on CPU)")
        if precision not in PRECISIONS:
            raise NervError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        if precision != "fp32" and device != "cuda":
            raise NervError(f"{precision} runs on CUDA only; use fp32 on CPU")
        self.name = "torch-cudagraph" if capture else "torch"
        self.device, self.can_capture = device, capture
        self.torch_device = torch.device(device)
        self.modules = graph_modules(*build_models(source.checkpoint(), self.torch_device))
        self.frame_t = torch.from_numpy(frame_times(source.config.frames)).to(self.torch_device)
        self.specs = graph_specs(source.config)
        self.autocast_dtype = None if precision == "fp32" else PRECISIONS[precision]

    def engine(self, graph: str) -> TorchEngine:
        if graph not in self.modules:
            raise NervError(f"this checkpoint has no {graph} weights (train the DiT first)")
        return TorchEngine(self.specs[graph], self.modules[graph], self.autocast_dtype)

    def refine_tokens(self, tokens: torch.Tensor, video: torch.Tensor, steps: int) -> torch.Tensor:
        return refine_tokens(self.modules["decoder"].decoder, tokens, self.frame_t, video, steps)

    def asarray(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device)

    def numpy(self, a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
