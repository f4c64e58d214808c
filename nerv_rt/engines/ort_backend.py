"""ONNX Runtime backend (CPU or CUDA EP) with IO binding and preallocated outputs. Torch-free.

On CUDA the inputs and outputs are bound to device OrtValues allocated once per shape; with
`cuda_graph=True` ONNX Runtime captures each graph at its first run per shape and replays it
(its own CUDA-graph option: fixed shapes and fixed buffer addresses).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..errors import NervError
from ..export.manifest import verify_graph
from ..export.specs import GraphSpec, graph_specs
from ..runtime.sources import ModelSource
from .base import Backend, _ort_cuda


class OrtEngine:
    def __init__(self, spec: GraphSpec, path: str, device: str, cuda_graph: bool):
        self.spec, self.path, self.device, self.cuda_graph = spec, path, device, cuda_graph
        self._sessions: dict[tuple, ort.InferenceSession] = {}
        self._buffers: dict[tuple, dict[str, object]] = {}

    def _session(self, key: tuple) -> ort.InferenceSession:
        # With CUDA graphs a session is tied to one set of shapes: keep one per shape key.
        key = key if self.cuda_graph else ()
        if key not in self._sessions:
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            if self.device == "cuda":
                providers = [("CUDAExecutionProvider", {"enable_cuda_graph": "1" if self.cuda_graph else "0"})]
            else:
                providers = ["CPUExecutionProvider"]
                # The memory-pattern planner keeps a second, pre-planned arena per input shape: on CPU it
                # quadrupled the decoder's resident memory (S preset) and bought no speed (bench/results).
                opts.enable_mem_pattern = False
            self._sessions[key] = ort.InferenceSession(self.path, opts, providers=providers)
        return self._sessions[key]

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {t.name: np.ascontiguousarray(inputs[t.name], dtype=t.dtype) for t in self.spec.inputs}
        key = tuple(a.shape for a in feeds.values())
        session = self._session(key)
        out_shapes = self.spec.output_shapes({k: v.shape for k, v in feeds.items()})
        binding = session.io_binding()
        if self.device == "cpu":
            bufs = self._buffers.setdefault(key, {n: np.empty(s, np.float32) for n, s in out_shapes.items()})
            for name, arr in feeds.items():
                binding.bind_cpu_input(name, arr)
            for name, buf in bufs.items():
                binding.bind_output(name, "cpu", 0, np.float32, buf.shape, buf.ctypes.data)
            session.run_with_iobinding(binding)
            return dict(bufs)
        # CUDA: fixed device buffers per shape (required by ORT's CUDA graphs), host data copied in.
        if key not in self._buffers:
            self._buffers[key] = {
                **{n: ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for n, a in feeds.items()},
                **{n: ort.OrtValue.ortvalue_from_shape_and_type(s, np.float32, "cuda", 0) for n, s in out_shapes.items()},
            }
        bufs = self._buffers[key]
        for name, arr in feeds.items():
            bufs[name].update_inplace(arr)
            binding.bind_ortvalue_input(name, bufs[name])
        for name in out_shapes:
            binding.bind_ortvalue_output(name, bufs[name])
        session.run_with_iobinding(binding)
        return {name: bufs[name].numpy() for name in out_shapes}


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, source: ModelSource, device: str = "auto", cuda_graph: bool = False):
        if device == "auto":
            device = "cuda" if _ort_cuda() else "cpu"
        if device == "cuda" and not _ort_cuda():
            raise NervError("--device cuda: this onnxruntime has no CUDAExecutionProvider "
                            "(install onnxruntime-gpu on a CUDA machine)")
        if cuda_graph and device != "cuda":
            raise NervError("--cuda-graph needs the CUDA execution provider (--device cuda)")
        self.device, self.cuda_graph = device, cuda_graph
        self.folder, self.manifest = source.path, source.manifest
        self.specs = graph_specs(source.config)

    def engine(self, graph: str) -> OrtEngine:
        path = verify_graph(self.folder, self.manifest, graph)
        return OrtEngine(self.specs[graph], str(path), self.device, self.cuda_graph and graph == "dit")

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def numpy(self, a: np.ndarray) -> np.ndarray:
        return a
