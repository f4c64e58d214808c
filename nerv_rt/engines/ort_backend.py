"""ONNX Runtime backend (CPU or CUDA EP) with IO binding and preallocated outputs. Torch-free.

On CUDA the inputs and outputs are bound to device OrtValues allocated once per shape; with
`cuda_graph=True` ONNX Runtime captures each graph at its first run per shape and replays it
(its own CUDA-graph option: fixed shapes and fixed buffer addresses). fp16 / bf16 run the export's
precision-typed graphs (fp32 inputs and outputs, see export/precision.py).
"""
from __future__ import annotations

import importlib.metadata
import os

import numpy as np
import onnxruntime as ort

from ..errors import NervError, setting
from ..export.manifest import PRECISIONS, graph_entry, verify_graph
from ..export.specs import GraphSpec, graph_specs
from ..runtime.sources import ModelSource
from .base import Backend

CPU_BUILD_HELP = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


def ort_distributions() -> list[str]:
    """Installed ONNX Runtime distributions. Both write the same `onnxruntime` package, so with two the
    one installed last wins and the CUDA EP may silently be gone."""
    found = []
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.version(dist)
            found.append(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def cuda_ep_available() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


def check_cuda_ep() -> None:
    """One clear line when the CUDA execution provider is missing, saying why and what fixes it."""
    if cuda_ep_available():
        return
    dists = ort_distributions()
    if len(dists) > 1:
        raise NervError(f"{setting('device', 'cuda')}: onnxruntime and onnxruntime-gpu are both installed and shadow "
                        f"each other (no CUDAExecutionProvider now); keep one: {CPU_BUILD_HELP}")
    raise NervError(f"{setting('device', 'cuda')}: this onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                    f"(a CPU build); on a CUDA machine: {CPU_BUILD_HELP}")


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
            if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # ORT ignores it; honour it as torch does (a Ray
                opts.intra_op_num_threads = int(os.environ["OMP_NUM_THREADS"])  # replica gets its num_cpus here)
            if self.device == "cuda":
                # The CUDA EP computes fp32 MatMul / Conv with TF32 unless told not to: an fp32 graph means fp32
                # (typed fp16 / bf16 graphs are not affected).
                providers = [("CUDAExecutionProvider", {"enable_cuda_graph": "1" if self.cuda_graph else "0",
                                                        "use_tf32": "0"})]
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

    def __init__(self, source: ModelSource, device: str = "auto", precision: str = "fp32", cuda_graph: bool = False):
        if device == "auto":
            device = "cuda" if cuda_ep_available() else "cpu"
        if device == "cuda":
            check_cuda_ep()
        if cuda_graph and device != "cuda":
            raise NervError(f"{setting('cuda_graph')} needs the CUDA execution provider ({setting('device', 'cuda')})")
        if precision not in PRECISIONS:
            raise NervError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        if precision == "bf16" and device == "cpu":
            raise NervError(f"{setting('precision', 'bf16')} on onnxruntime needs {setting('device', 'cuda')}: its "
                            "CPU provider has no bf16 MatMul / Conv kernels; on the CPU use fp32 or fp16, or a "
                            f"checkpoint with {setting('backend', 'torch')}")
        self.device, self.precision, self.cuda_graph = device, precision, cuda_graph
        self.folder, self.manifest = source.path, source.manifest
        self.specs = graph_specs(source.config)
        for graph in self.manifest["graphs"]:  # a precision the export lacks fails at load, not at the first call
            graph_entry(self.folder, self.manifest, graph, precision)

    def engine(self, graph: str) -> OrtEngine:
        path = verify_graph(self.folder, self.manifest, graph, self.precision)
        # ORT's CUDA graphs tie a session to one set of shapes: only the DiT, called with the same shapes at
        # every step, gains; a decoder chunk of another size would cost a new session.
        return OrtEngine(self.specs[graph], str(path), self.device, self.cuda_graph and graph == "dit")

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def numpy(self, a: np.ndarray) -> np.ndarray:
        return a
