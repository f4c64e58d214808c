"""PyTorch eager backend (CPU or CUDA); with capture=True the runtime graphs the whole sampling loop.

fp16 / bf16 convert the modules (weights included) to that dtype, with the models' sensitive ops
(demodulation, norms, attention, sin / cos encodings) in fp32, as the exported typed graphs do;
autocast would keep fp32 weights and re-cast them at every step.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checkpoint import build_models
from ..errors import NervError, setting
from ..export.specs import GraphSpec, graph_specs
from ..models.graphs import graph_modules
from ..models.refine import refine_tokens
from ..runtime.frames import frame_times
from ..runtime.sources import ModelSource
from .base import Backend

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GENERATION_GRAPHS = ("dit", "decoder")  # what generation runs; the encoder moves to the device when asked for


class TorchEngine:
    def __init__(self, spec: GraphSpec, module: torch.nn.Module):
        self.spec, self.module = spec, module

    @torch.no_grad()
    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.spec.output_names[0]: self.module(*(inputs[n] for n in self.spec.input_names))}


class TorchBackend(Backend):
    can_refine = True

    def __init__(self, source: ModelSource, device: str = "auto", precision: str = "fp32", capture: bool = False,
                 graphs: dict[str, torch.nn.Module] | None = None):
        """`graphs` (graph name -> module, as models.graphs.graph_modules gives) runs modules already built (e.g.
        random-init ones made on the GPU by the benchmarks) instead of the source's checkpoint."""
        cuda = torch.cuda.is_available()
        if device == "auto":
            device = "cuda" if cuda else "cpu"
        if device == "cuda" and not cuda:
            raise NervError(f"{setting('device', 'cuda')}: no CUDA GPU is available to torch")
        if capture and device != "cuda":
            raise NervError(f"the torch-cudagraph backend needs a CUDA GPU (use {setting('backend', 'torch')} on CPU)")
        if precision not in PRECISIONS:
            raise NervError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        if precision != "fp32" and device != "cuda":
            raise NervError(f"{setting('precision', precision)} runs on CUDA only; use fp32 on CPU")
        self.name = "torch-cudagraph" if capture else "torch"
        self.device, self.precision, self.can_capture = device, precision, capture
        self.torch_device = torch.device(device)
        if graphs is None:
            graphs = graph_modules(*build_models(source.checkpoint(), "cpu"))
        self.modules = {g: m.to(PRECISIONS[precision]) for g, m in graphs.items()}
        for g in GENERATION_GRAPHS:
            if g in self.modules:
                self.modules[g].to(self.torch_device)
        self.frame_t = torch.from_numpy(frame_times(source.config.frames)).to(self.torch_device)
        self.specs = graph_specs(source.config)

    def engine(self, graph: str) -> TorchEngine:
        if graph not in self.modules:
            raise NervError(f"this checkpoint has no {graph} weights (train the DiT first)")
        return TorchEngine(self.specs[graph], self.modules[graph].to(self.torch_device))

    def refine_tokens(self, tokens: torch.Tensor, video: torch.Tensor, steps: int) -> torch.Tensor:
        return refine_tokens(self.modules["decoder"].decoder, tokens, self.frame_t, video, steps)

    def asarray(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device)

    def numpy(self, a: torch.Tensor) -> np.ndarray:
        return a.detach().float().cpu().numpy()

    def concat(self, arrays: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(arrays)

    def synchronize(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
