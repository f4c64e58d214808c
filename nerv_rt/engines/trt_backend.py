"""TensorRT backend (10.12+ / 11.x): tensor-name I/O, execute_async_v3 on the backend's own CUDA stream, torch
device buffers shared with the runtime (so the whole sampling loop can be captured in one CUDA graph).

What the TensorRT headers require and how this module meets it (shared/reference/tensorrt.md, section 8):
- every bound address is 256-byte aligned and fixed: inputs are copied into static per-shape buffers that
  torch allocates (never views such as row i of a table), outputs are static too; alignment is asserted;
- every set_input_shape / set_tensor_address / execute_async_v3 result is checked; a shape outside the
  engine's profile is refused naming the limit (the pipeline splits batches and frame chunks to fit, from
  `max_batch` / `max_frames`);
- enqueues go to a stream of the backend's (from torch's pool, never the legacy default stream, which would cost
  extra device synchronizations), ordered against torch's current stream both ways; inside a graph capture the
  stream joins the capture and is always joined back, also when the enqueue fails;
- `engine()` gives a new execution context on every call, so each captured graph owns one context whose
  bindings nothing changes after capture; contexts run one at a time on one stream, so they share one
  activation buffer (USER_MANAGED allocation), sized to the larger of the DiT and the decoder. The encoder's
  engine is loaded when first asked for (generation never needs it), with a buffer of its own only where it
  needs more than that one.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import NervError, setting
from ..export.manifest import graph_entry, graph_sha256
from ..export.specs import GRAPHS, GraphSpec, graph_specs
from ..export.trt_build import (
    check_runtime_match,
    engine_entry,
    import_tensorrt,
    runtime_mismatch,
    tensorrt_available,
    trt_logger,
)
from ..formats import sha256_file
from ..machine import gpu_identity
from ..runtime.sources import ModelSource
from .base import Backend

try:
    import tensorrt as trt
except ImportError:  # the CPU machines: TrtBackend calls import_tensorrt() first
    trt = None  # type: ignore[assignment]

ALIGNMENT = 256  # bytes, for every address bound to an execution context
MAX_SHAPES = 4  # static buffer sets kept per context (a DiT batch, a full and a last decoder chunk, ...)


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(dims[i] for i in range(len(dims)))


def engines_ready(source: ModelSource, precision: str = "fp32") -> bool:
    """Whether `auto` should pick TensorRT: engines at `precision` for the DiT and the decoder, built for this
    TensorRT and GPU with these builder settings (runtime_mismatch), tensorrt importable, and a CUDA GPU."""
    entries = [engine_entry(source.manifest or {}, g, precision) for g in ("dit", "decoder")]
    if any(e is None for e in entries) or not tensorrt_available():
        return False
    try:
        gpu, cc = gpu_identity()
    except NervError:
        return False
    return not any(runtime_mismatch(e, trt.__version__, gpu, cc) for e in entries if e is not None)


class TrtEngine:
    """One execution context of one engine, with static, aligned input and output buffers per input shape."""

    def __init__(self, spec: GraphSpec, engine: trt.ICudaEngine, backend: TrtBackend, scratch: Any):
        import torch

        self.spec, self.torch, self.stream = spec, torch, backend.stream
        # The context holds raw addresses of these: they must live as long as it (an engine may outlive its
        # backend in a caller's hands).
        self._backend, self._scratch = backend, scratch
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise NervError(f"{spec.name} engine: TensorRT could not create an execution context")
        self.context = context
        self.context.set_device_memory(scratch.data_ptr(), scratch.numel())
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.BF16: torch.bfloat16,
                  trt.DataType.INT32: torch.int32, trt.DataType.INT64: torch.int64}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}
        # [min, opt, max] of the dynamic inputs (profile 0, the only one); a static input's shape is the engine's
        self.profile = {n: [_shape(d) for d in engine.get_tensor_profile_shape(n, 0)] for n in spec.input_names
                        if -1 in _shape(engine.get_tensor_shape(n))}
        self.static = {n: _shape(engine.get_tensor_shape(n)) for n in spec.input_names if n not in self.profile}
        self._buffers: OrderedDict[tuple, dict[str, Any]] = OrderedDict()  # a few shapes: DiT batches, frame chunks
        self._bound: tuple | None = None

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        if name in self.static:
            if shape != self.static[name]:
                raise NervError(f"{self.spec.name} engine: input {name} of shape {shape}; it was built for "
                                f"{self.static[name]}")
            return
        lo, _, hi = self.profile[name]
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise NervError(f"{self.spec.name} engine: input {name} of shape {shape} is outside its profile {lo}..{hi}; "
                            f"rebuild with a larger --max-batch / --max-frames (`nerv-rt build`)")

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
        """The static buffers for these input shapes, bound to the context. Rebinding happens only here, in a
        context no captured graph has recorded: each captured graph gets a context of its own."""
        key, ctx = tuple(shapes.values()), self.context
        if self._bound != key:
            self._bound = None  # until every shape and address below is set
            for name, shape in shapes.items():
                if not ctx.set_input_shape(name, shape):
                    raise NervError(f"{self.spec.name} engine: TensorRT refused input shape {name} {shape}")
            if key not in self._buffers:
                empty = lambda n, s: self.torch.empty(s, dtype=self.dtypes[n], device="cuda")  # noqa: E731
                self._buffers[key] = {**{n: empty(n, s) for n, s in shapes.items()},
                                      **{n: empty(n, _shape(ctx.get_tensor_shape(n))) for n in self.spec.output_names}}
                if len(self._buffers) > MAX_SHAPES:  # the oldest shape's buffers: bound nowhere now
                    self._buffers.popitem(last=False)
            self._buffers.move_to_end(key)
            for name, t in self._buffers[key].items():
                if t.data_ptr() % ALIGNMENT:
                    raise NervError(f"{self.spec.name} engine: {name} buffer is not {ALIGNMENT}-byte aligned")
                if not ctx.set_tensor_address(name, t.data_ptr()):
                    raise NervError(f"{self.spec.name} engine: TensorRT refused the address of {name}")
            self._bound = key
        return self._buffers[key]

    def __call__(self, **inputs) -> dict[str, Any]:
        torch = self.torch
        shapes = {n: tuple(inputs[n].shape) for n in self.spec.input_names}
        for name, shape in shapes.items():
            self._check_profile(name, shape)
        bufs = self._bind(shapes)
        for name in self.spec.input_names:
            bufs[name].copy_(inputs[name])  # into the static buffer, on torch's current stream
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        try:
            ok = self.context.execute_async_v3(self.stream.cuda_stream)
        finally:  # joined back even on failure: a capture with an unjoined stream cannot end
            current.wait_stream(self.stream)
        if not ok:
            raise NervError(f"TensorRT execution of the {self.spec.name} engine failed")
        return {n: bufs[n] if bufs[n].dtype == torch.float32 else bufs[n].float() for n in self.spec.output_names}


class TrtBackend(Backend):
    name = "tensorrt"

    def __init__(self, source: ModelSource, device: str = "auto", precision: str = "fp32", capture: bool = True):
        import_tensorrt(otherwise=f"use {setting('backend', 'onnxruntime')}")
        try:
            import torch
        except ImportError:
            raise NervError("the tensorrt backend keeps its buffers in torch CUDA tensors: install torch with CUDA") from None
        if device == "cpu" or not torch.cuda.is_available():
            raise NervError("the tensorrt backend needs a CUDA GPU")
        self.torch, self.device, self.precision, self.can_capture = torch, "cuda", precision, capture
        self.source, self.folder, self.manifest = source, source.path, source.manifest or {}
        self.specs = graph_specs(source.config)
        self.gpu = gpu_identity()
        self.runtime = trt.Runtime(trt_logger())
        self.stream = torch.cuda.Stream()
        if not all(engine_entry(self.manifest, g, precision) for g in ("dit", "decoder")):
            raise NervError(f"{self.folder}: no {precision} TensorRT engines for the DiT and the decoder; run "
                            f"`nerv-rt build {self.folder} --precision {precision}`")
        self._engines = {g: self._load(g) for g in ("dit", "decoder")}
        # One activation buffer for every context: they run one at a time on self.stream.
        size = max(e.device_memory_size_v2 for e in self._engines.values())
        self.scratch = torch.empty(size, dtype=torch.uint8, device="cuda")
        self._scratch = {g: self.scratch for g in self._engines}  # per graph: the shared buffer, or its own
        dit_max = _shape(self._engines["dit"].get_tensor_profile_shape("x_t", 0)[2])[0]
        self.max_batch = max(1, dit_max // 2)  # videos per sampling run: the DiT runs 2n with CFG
        self.max_frames = _shape(self._engines["decoder"].get_tensor_profile_shape("frame_t", 0)[2])[0]

    def _load(self, graph: str) -> trt.ICudaEngine:
        entry = engine_entry(self.manifest, graph, self.precision)
        assert entry is not None
        path = self.folder / entry["file"]
        check_runtime_match(entry, trt.__version__, *self.gpu, path)
        # A plan is executable code: load only the one this manifest names (sha256), built from these graphs.
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise NervError(f"{path}: missing or changed since it was built; run `nerv-rt build {self.folder}`")
        if entry["key"].get("onnx_sha256") != graph_sha256(graph_entry(self.folder, self.manifest, graph, self.precision)):
            raise NervError(f"{path}: built from another {graph} graph than this export's; run `nerv-rt build {self.folder}`")
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise NervError(f"{path}: TensorRT could not load the engine; run `nerv-rt build {self.folder}`")
        return engine

    def engine(self, graph: str) -> TrtEngine:
        if graph not in self._engines:  # the encoder, loaded when first asked for
            if graph not in GRAPHS or engine_entry(self.manifest, graph, self.precision) is None:
                raise NervError(f"{self.folder}: no {self.precision} TensorRT engine for the {graph}; run "
                                f"`nerv-rt build {self.folder} --precision {self.precision}`")
            engine = self._load(graph)
            size = engine.device_memory_size_v2
            self._scratch[graph] = (self.scratch if size <= self.scratch.numel()
                                    else self.torch.empty(size, dtype=self.torch.uint8, device="cuda"))
            self._engines[graph] = engine
        return TrtEngine(self.specs[graph], self._engines[graph], self, self._scratch[graph])

    def asarray(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to("cuda")

    def numpy(self, a) -> np.ndarray:
        return a.detach().float().cpu().numpy()

    def concat(self, arrays: list):
        return self.torch.cat(arrays)

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()
