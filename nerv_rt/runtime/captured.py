"""Whole-loop CUDA graphs: the entire sampling loop (DiT forwards, CFG combine, scheduler updates,
pre-drawn noise) captured once per (n, steps, sampler, eta, guidance) key and replayed.

Works with any backend whose engines run on (or join) torch's current CUDA stream: torch-cudagraph,
tensorrt, aoti. Each captured graph gets DiT engine of its own (for TensorRT: its own execution context),
so capturing another key never rebinds what an earlier graph recorded. Graphs are kept in a bounded LRU.
A capture that fails (an engine that cannot be captured) falls back to the step loop with one warning.
A replay copies the seed's inputs into the static buffers, launches one graph, and leaves the tokens on
the device for the decoder engine.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..engines.base import Backend, Engine
from ..errors import warn
from .sampling import DeviceInputs, SamplerInputs, denoise

MAX_GRAPHS = 8  # captured keys kept; each holds its buffers and, on TensorRT, an execution context


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    engine: Engine
    inputs: DeviceInputs
    output: torch.Tensor


class CapturedSampler:
    def __init__(self, backend: Backend, max_graphs: int = MAX_GRAPHS):
        self.backend, self.max_graphs = backend, max_graphs
        self.graphs: OrderedDict[tuple, _Captured] = OrderedDict()
        self._failed: set[tuple] = set()

    def __call__(self, key: tuple, host: SamplerInputs) -> torch.Tensor | None:
        """x_0 (n, N, d) from the captured loop of `key` (captured on first use), or None where capture failed:
        the caller then runs the step loop."""
        if key in self._failed:
            return None
        if key not in self.graphs:
            try:
                cap = self._capture(host)
            except Exception as e:  # an engine that cannot be captured: fall back, once per key
                torch.cuda.synchronize()
                self._failed.add(key)
                warn(f"CUDA graph capture of the sampling loop failed ({type(e).__name__}: {e}); running it "
                     "step by step", RuntimeWarning)
                return None
            self.graphs[key] = cap
            if len(self.graphs) > self.max_graphs:
                torch.cuda.synchronize()  # nothing may still run on the evicted graph's buffers
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        cap = self.graphs[key]
        for static, value in ((cap.inputs.x_T, host.x_T), (cap.inputs.noise, host.noise), (cap.inputs.y, host.y)):
            static.copy_(torch.from_numpy(value))
        cap.graph.replay()
        return cap.output

    def _capture(self, host: SamplerInputs) -> _Captured:
        engine = self.backend.engine("dit")
        inputs = DeviceInputs.from_host(self.backend, host)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: lazy init, workspaces, TRT's first enqueue
            denoise(engine, inputs, host.guidance)
        torch.cuda.current_stream().wait_stream(side)
        graph, stream = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads' CUDA calls stay legal
                output = denoise(engine, inputs, host.guidance)
        finally:  # where capture_end raises, torch's context leaves its capture stream current: the fallback's too
            torch.cuda.set_stream(stream)
        return _Captured(graph, engine, inputs, output)
