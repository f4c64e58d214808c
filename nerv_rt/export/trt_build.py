"""TensorRT 10 engines from an export folder: explicit profiles, a timing cache, atomic writes, and a
cache key per engine so that a build is reused until something that invalidates it changes.

The key holds what makes a plan valid (TensorRT's own rules: same TensorRT version, same GPU model /
compute capability) plus what we built it from (ONNX sha256, precision, profile shapes). The key logic
is plain Python and is tested without TensorRT.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import NervError
from ..formats import atomic_path, sha256_file
from ..models.presets import ModelConfig
from .manifest import verify_graph, write_manifest
from .specs import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FRAMES,
    GRAPHS,
    graph_specs,
    profile_shapes,
)

PRECISIONS = ("fp32", "fp16", "bf16")
TIMING_CACHE = "timing.cache"


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise NervError("TensorRT is not installed: on a CUDA machine run `pip install 'nerv-rt[gpu]'` "
                        "(tensorrt>=10), or use --backend onnxruntime") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise NervError(f"TensorRT {trt.__version__} found; nerv-rt needs TensorRT 10 or newer")
    return trt


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0."""
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return p.name, f"{p.major}.{p.minor}"
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise NervError("cannot query the GPU: install torch with CUDA or cuda-python") from None
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise NervError(f"no CUDA GPU available (cudaGetDeviceProperties error {int(err)})")
    return props.name.decode().rstrip("\x00"), f"{props.major}.{props.minor}"


def engine_key(onnx_sha256: str, precision: str, profiles: dict[str, Any], trt_version: str, gpu_name: str,
               compute_capability: str) -> dict[str, Any]:
    """Everything a plan depends on; two builds with equal keys give interchangeable engines."""
    return {"onnx_sha256": onnx_sha256, "precision": precision,
            "profiles": {k: [list(s) for s in v] for k, v in sorted(profiles.items())},
            "tensorrt": trt_version, "gpu": gpu_name, "compute_capability": compute_capability}


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def stale_fields(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Which key fields differ (empty: the recorded engine is still valid)."""
    return sorted(k for k in wanted if recorded.get(k) != wanted[k])


def check_runtime_match(entry: dict[str, Any], trt_version: str, gpu_name: str, cc: str, path: Path) -> None:
    """A plan loads only on the TensorRT version and GPU it was built for: say so before TensorRT fails."""
    key = entry["key"]
    here = {"tensorrt": trt_version, "gpu": gpu_name, "compute_capability": cc}
    bad = [f"{k} {key.get(k)} (running {v})" for k, v in here.items() if key.get(k) != v]
    if bad:
        raise NervError(f"{path}: engine was built for {', '.join(bad)}; rebuild with `nerv-rt build {path.parent}`")


def plan_name(graph: str, precision: str) -> str:
    return f"{graph}.{precision}.plan"


def build_engines(folder: Path, manifest: dict[str, Any], precision: str = "fp16", max_batch: int | None = None,
                  max_frames: int | None = None, workspace_gb: float = 4.0,
                  step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build (or reuse) one engine per graph of the export folder and record them in its manifest."""
    if precision not in PRECISIONS:
        raise NervError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    trt = import_tensorrt()
    gpu_name, cc = gpu_identity()
    limits = manifest.get("limits", {})
    max_batch = max_batch or limits.get("max_batch", DEFAULT_MAX_BATCH)
    max_frames = max_frames or limits.get("max_frames", DEFAULT_MAX_FRAMES)
    specs = graph_specs(ModelConfig.from_dict(manifest["config"]))
    engines = dict(manifest.get("engines", {}))
    for graph in (g for g in GRAPHS if g in manifest["graphs"]):
        onnx_path = verify_graph(folder, manifest, graph)
        profiles = profile_shapes(specs[graph], max_batch, max_frames)
        key = engine_key(manifest["graphs"][graph]["sha256"], precision, profiles, trt.__version__, gpu_name, cc)
        plan = folder / plan_name(graph, precision)
        old = engines.get(graph)
        if old and not stale_fields(old["key"], key) and plan.is_file() and sha256_file(plan) == old["sha256"]:
            if step:
                step(f"{graph}: up to date ({old['key_digest']})")
            continue
        if step:
            step(f"{graph}: building {precision} engine")
        _build_one(trt, onnx_path, plan, profiles, precision, workspace_gb, folder / TIMING_CACHE)
        engines[graph] = {"file": plan.name, "sha256": sha256_file(plan), "key": key, "key_digest": key_digest(key)}
    manifest = {**manifest, "engines": engines}
    write_manifest(folder, manifest)
    return manifest


def _build_one(trt, onnx_path: Path, plan: Path, profiles: dict, precision: str, workspace_gb: float,
               cache_path: Path) -> None:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise NervError(f"{onnx_path}: TensorRT could not parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise NervError(f"{onnx_path}: TensorRT build failed (see the log above; try --workspace or a smaller "
                        "--max-frames / --max-batch)")
    with atomic_path(plan) as tmp:
        tmp.write_bytes(bytes(serialized))
    with atomic_path(cache_path) as tmp:
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
