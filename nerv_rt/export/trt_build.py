"""TensorRT engines from an export folder, strongly typed (TensorRT 10.12+ and 11.x): explicit profiles, a
timing cache per GPU and TensorRT version, atomic writes, and a cache key per engine so that a build is
reused until something that invalidates it changes.

Precision lives in the ONNX graph (export/precision.py): an fp16 engine is built from decoder.fp16.onnx,
not from builder flags (TensorRT 11 has none). Every engine clears TF32, so that the fp32 tensors of any graph
(all of an fp32 one; norms, softmax and attention of an fp16 / bf16 one) compute in fp32, as the graph says.

The key holds what makes a plan valid (TensorRT's own rules: same TensorRT version, same GPU model /
compute capability) plus what we built it from (ONNX sha256, precision, profile shapes) and how (BUILD_POLICY,
raised when the builder settings below change, so older plans are rebuilt). The key logic
is plain Python and is tested without TensorRT; the TensorRT calls are type-checked against the official
stubs (tests/test_tensorrt.py).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import NervError, install_command
from ..formats import atomic_path, sha256_file
from ..machine import gpu_identity
from ..models.presets import ModelConfig
from .manifest import PRECISIONS, graph_entry, graph_sha256, key_digest, stale_fields, verify_graph, write_manifest
from .specs import DEFAULT_MAX_BATCH, DEFAULT_MAX_FRAMES, GRAPHS, graph_specs, profile_shapes

try:
    import tensorrt as trt
except ImportError:  # the CPU machines: every entry point calls import_tensorrt() first
    trt = None  # type: ignore[assignment]

MIN_VERSION = (10, 12)  # strongly typed networks with fp16 / bf16 graphs; 11.x is strongly typed only
# The builder settings of _build_one: 2 = TF32 cleared at every precision (1: for fp32 engines only)
BUILD_POLICY = 2


def import_tensorrt(otherwise: str = ""):
    """The tensorrt module, or one clear error: not installed, only its type stubs (`tensorrt-stubs` makes an
    empty `tensorrt` namespace package), or too old. `otherwise` ends the error with what to do without it."""
    fix = f"on a CUDA machine: {install_command('gpu')} (tensorrt 10.12 to 11.x)" + (f", or {otherwise}" if otherwise else "")
    if trt is None or not hasattr(trt, "Builder"):
        raise NervError(f"TensorRT is not installed: {fix}")
    if tuple(int(v) for v in trt.__version__.split(".")[:2]) < MIN_VERSION:
        raise NervError(f"TensorRT {trt.__version__} found; nerv-rt needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer: "
                        f"{fix}")
    return trt


@functools.cache
def trt_logger() -> trt.ILogger:
    """The process's one TensorRT logger, for every builder, parser and runtime: TensorRT keeps a single global
    logger pointer, and a Python Runtime keeps only its own logger alive, so a per-object logger freed with its
    builder or backend would leave another live runtime calling into freed memory."""
    return trt.Logger(trt.Logger.WARNING)


def tensorrt_available() -> bool:
    try:
        import_tensorrt()
    except NervError:
        return False
    return True


def engine_key(onnx_sha256: str, precision: str, profiles: dict[str, Any], trt_version: str, gpu_name: str,
               compute_capability: str) -> dict[str, Any]:
    """Everything a plan depends on; two builds with equal keys give interchangeable engines. `onnx_sha256` is
    manifest.graph_sha256: the graph file's, combined with its weights file's when it reads one."""
    return {"onnx_sha256": onnx_sha256, "precision": precision,
            "profiles": {k: [list(s) for s in v] for k, v in sorted(profiles.items())},
            "tensorrt": trt_version, "gpu": gpu_name, "compute_capability": compute_capability,
            "build_policy": BUILD_POLICY}


def runtime_mismatch(entry: dict[str, Any], trt_version: str, gpu_name: str, cc: str) -> list[str]:
    """Why a plan cannot run here, one "field built (running here)" each; empty when it can. A plan loads only on
    the TensorRT version and GPU it was built for, and is used only when built with this nerv-rt's builder
    settings (an older plan computes otherwise)."""
    key = entry["key"]
    here = {"tensorrt": trt_version, "gpu": gpu_name, "compute_capability": cc, "build_policy": BUILD_POLICY}
    return [f"{k} {key.get(k)} (running {v})" for k, v in here.items() if key.get(k) != v]


def check_runtime_match(entry: dict[str, Any], trt_version: str, gpu_name: str, cc: str, path: Path) -> None:
    """runtime_mismatch as one error, before TensorRT fails."""
    bad = runtime_mismatch(entry, trt_version, gpu_name, cc)
    if bad:
        raise NervError(f"{path}: engine was built for {', '.join(bad)}; rebuild with `nerv-rt build {path.parent}`")


def plan_name(graph: str, precision: str) -> str:
    return f"{graph}.{precision}.plan"


def timing_cache_name(gpu_name: str, compute_capability: str, trt_version: str) -> str:
    """One timing cache per GPU model, compute capability and TensorRT version: NvInfer.h warns that a cache
    from devices with other properties may give functional or performance bugs."""
    gpu = re.sub(r"[^a-z0-9]+", "-", gpu_name.lower()).strip("-")
    return f"timing-{gpu}-sm{compute_capability.replace('.', '')}-trt{trt_version}.cache"


def engine_entry(manifest: dict[str, Any], graph: str, precision: str) -> dict[str, Any] | None:
    return manifest.get("engines", {}).get(plan_name(graph, precision))


def typed_precision(manifest: dict[str, Any]) -> str:
    """The precision `build` picks when not told: fp16 where the export holds fp16 graphs of all its graphs, else
    bf16 where it holds those, else fp32 (what `nerv-rt export` writes without --precision)."""
    graphs = manifest.get("graphs", {}).values()
    typed = [p for p in ("fp16", "bf16") if graphs and all(p in g.get("precisions", {}) for g in graphs)]
    return typed[0] if typed else "fp32"


def build_engines(folder: Path, manifest: dict[str, Any], precision: str = "auto", max_batch: int | None = None,
                  max_frames: int | None = None, workspace_gb: float = 4.0,
                  step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or reuse) one engine per graph of the export folder from its `precision` graphs (auto:
    `typed_precision`) and record them in its manifest (manifest["engines"]["<graph>.<precision>.plan"])."""
    if precision == "auto":
        precision = typed_precision(manifest)
    if precision not in PRECISIONS:
        raise NervError(f"unknown precision {precision!r}; choose from auto, {', '.join(PRECISIONS)}")
    import_tensorrt()
    gpu_name, cc = gpu_identity()
    limits = manifest.get("limits", {})
    max_batch = max_batch or limits.get("max_batch", DEFAULT_MAX_BATCH)
    max_frames = max_frames or limits.get("max_frames", DEFAULT_MAX_FRAMES)
    specs = graph_specs(ModelConfig.from_dict(manifest["config"]))
    engines = dict(manifest.get("engines", {}))
    cache = folder / timing_cache_name(gpu_name, cc, trt.__version__)
    for graph in (g for g in GRAPHS if g in manifest["graphs"]):
        onnx_path = verify_graph(folder, manifest, graph, precision)
        profiles = profile_shapes(specs[graph], max_batch, max_frames)
        key = engine_key(graph_sha256(graph_entry(folder, manifest, graph, precision)), precision, profiles,
                         trt.__version__, gpu_name, cc)
        plan = folder / plan_name(graph, precision)
        old = engines.get(plan.name)
        if old and not stale_fields(old["key"], key) and plan.is_file() and sha256_file(plan) == old["sha256"]:
            if step:
                step(f"{plan.name}: up to date ({old['key_digest']})")
            continue
        if step:
            step(f"{plan.name}: building from {onnx_path.name} (strongly typed)")
        _build_one(onnx_path, plan, profiles, workspace_gb, cache)
        engines[plan.name] = {"graph": graph, "precision": precision, "file": plan.name, "sha256": sha256_file(plan),
                              "key": key, "key_digest": key_digest(key)}
    manifest = {**manifest, "engines": engines}
    write_manifest(folder, manifest)
    return manifest


def _build_one(onnx_path: Path, plan: Path, profiles: dict[str, tuple[tuple[int, ...], ...]], workspace_gb: float,
               cache_path: Path) -> None:
    logger = trt_logger()
    builder = trt.Builder(logger)
    # Types come from the graph; the flag is the opt-in on 10.x and accepted (the only mode) on 11.x.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise NervError(f"{onnx_path}: TensorRT could not parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    config.clear_flag(trt.BuilderFlag.TF32)  # on by default: fp32 tensors would compute with 10-bit mantissas
    if profiles:  # the dynamic inputs' ranges; a static graph (the encoder) has none
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in profiles.items():
            profile.set_shape(name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi)))
        if config.add_optimization_profile(profile) < 0:
            raise NervError(f"{onnx_path}: TensorRT refused the optimization profile {profiles}")
    timing = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(timing, False):  # ignore_mismatch=False: a foreign cache is an error
        raise NervError(f"{cache_path}: timing cache made with another GPU or TensorRT; delete it and build again")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise NervError(f"{onnx_path}: TensorRT build failed (see the log above; try --workspace or a smaller "
                        "--max-frames / --max-batch)")
    with atomic_path(plan) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(cache_path) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
