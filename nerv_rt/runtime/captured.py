"""Whole-loop CUDA graphs: the entire sampling loop (DiT forwards, CFG combine, scheduler updates,
pre-drawn noise) captured once per (n, steps, sampler, eta, guidance) key and replayed.

Works with any backend whose engines run on torch's current CUDA stream (torch-cudagraph and
tensorrt). A replay copies the seed's inputs into the static buffers, launches one graph, and
leaves the tokens on the device for the decoder engine.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..engines.base import Backend, Engine
from .sampling import DeviceInputs, SamplerInputs, denoise


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: DeviceInputs
    output: torch.Tensor


class CapturedSampler:
    def __init__(self, backend: Backend, dit: Engine):
        self.backend, self.dit = backend, dit
        self._graphs: dict[tuple, _Captured] = {}

    def __call__(self, key: tuple, host: SamplerInputs) -> torch.Tensor:
        if key not in self._graphs:
            self._graphs[key] = self._capture(host)
        cap = self._graphs[key]
        for static, value in ((cap.inputs.x_T, host.x_T), (cap.inputs.noise, host.noise), (cap.inputs.y, host.y)):
            static.copy_(torch.from_numpy(value), non_blocking=False)
        cap.graph.replay()
        return cap.output

    def _capture(self, host: SamplerInputs) -> _Captured:
        inputs = DeviceInputs.from_host(self.backend, host)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: lazy init, workspaces, TRT first enqueue
            denoise(self.dit, inputs, host.guidance)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = denoise(self.dit, inputs, host.guidance)
        return _Captured(graph, inputs, output)
