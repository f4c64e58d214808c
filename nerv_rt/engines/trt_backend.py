"""TensorRT 10 backend: tensor-name I/O, execute_async_v3 on torch's current CUDA stream, torch device
buffers shared with the runtime (so the whole sampling loop can be captured in one CUDA graph)."""
from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import NervError
from ..export.specs import GraphSpec, graph_specs
from ..formats import sha256_file
from ..runtime.sources import ModelSource
from .base import Backend


def engines_ready(source: ModelSource) -> bool:
    """Whether `auto` should pick TensorRT: engines recorded for every graph, tensorrt importable, a GPU."""
    engines = (source.manifest or {}).get("engines", {})
    if not engines or set(engines) != set(source.manifest.get("graphs", {})):
        return False
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


class TrtEngine:
    def __init__(self, spec: GraphSpec, engine, trt):
        import torch

        self.spec, self.engine, self.torch = spec, engine, torch
        self.context = engine.create_execution_context()
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                  trt.DataType.BF16: torch.bfloat16, trt.DataType.INT32: torch.int32,
                  trt.DataType.INT64: torch.int64}
        self.dtypes = {engine.get_tensor_name(i): dtypes[engine.get_tensor_dtype(engine.get_tensor_name(i))]
                       for i in range(engine.num_io_tensors)}
        self._outputs: dict[tuple, dict] = {}
        self._keep: list = []

    def __call__(self, **inputs):
        torch, ctx = self.torch, self.context
        feeds = {n: inputs[n].to(self.dtypes[n]).contiguous() for n in self.spec.input_names}
        for name, t in feeds.items():
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        key = tuple(tuple(t.shape) for t in feeds.values())
        if key not in self._outputs:  # fixed output buffers per shape: stable addresses for CUDA graphs
            self._outputs[key] = {n: torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=self.dtypes[n], device="cuda")
                                  for n in self.spec.output_names}
        outs = self._outputs[key]
        for name, t in outs.items():
            ctx.set_tensor_address(name, t.data_ptr())
        self._keep = list(feeds.values())  # casts made here must outlive the asynchronous launch
        if not ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise NervError(f"TensorRT execution of the {self.spec.name} engine failed")
        return {n: t.float() for n, t in outs.items()}


class TrtBackend(Backend):
    name = "tensorrt"

    def __init__(self, source: ModelSource, device: str = "auto", capture: bool = True):
        from ..export.trt_build import (
            check_runtime_match,
            gpu_identity,
            import_tensorrt,
        )

        self.trt = import_tensorrt()
        if importlib.util.find_spec("torch") is None:
            raise NervError("the tensorrt backend keeps its buffers in torch CUDA tensors: install torch with CUDA")
        import torch

        if device == "cpu" or not torch.cuda.is_available():
            raise NervError("the tensorrt backend needs a CUDA GPU")
        self.torch, self.device, self.can_capture = torch, "cuda", capture
        self.folder, self.manifest = source.path, source.manifest
        self.specs = graph_specs(source.config)
        self.gpu = gpu_identity()
        self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        self._check = check_runtime_match

    def engine(self, graph: str) -> TrtEngine:
        entry = self.manifest.get("engines", {}).get(graph)
        if entry is None:
            raise NervError(f"{self.folder}: no TensorRT engine for {graph}; run `nerv-rt build {self.folder}`")
        path = self.folder / entry["file"]
        self._check(entry, self.trt.__version__, *self.gpu, path)
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise NervError(f"{path}: missing or changed since it was built; run `nerv-rt build {self.folder}`")
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise NervError(f"{path}: TensorRT could not load the engine; run `nerv-rt build {self.folder}`")
        return TrtEngine(self.specs[graph], engine, self.trt)

    def asarray(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to("cuda")

    def numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()
