"""Checkpoint -> ONNX graphs + manifest.json, validated, written atomically.

Each graph is exported with torch.onnx (dynamo exporter, dynamic dims from `specs`), checked with
the ONNX checker, run on ONNX Runtime CPU against PyTorch on random inputs (at a dynamic size other
than the traced one), and scanned for operators TensorRT's parser does not take.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..checkpoint import Checkpoint, build_models
from ..errors import NervError
from ..formats import EXPORT_FORMAT, EXPORT_VERSION, atomic_path, sha256_file
from ..models.graphs import graph_modules
from ..runtime.sources import resolve, source_name
from .manifest import write_manifest
from .specs import DEFAULT_MAX_BATCH, DEFAULT_MAX_FRAMES, GRAPHS, GraphSpec, graph_specs
from .trt_ops import unsupported_ops

DEFAULT_OPSET = 18
MIN_DECODER_PSNR_DB = 45.0
TRACE_DIMS = {"B": 2, "F": 16}  # traced sizes; validation runs other sizes to prove the dims are dynamic
CHECK_DIMS = {"B": 3, "F": 7}


def sha256_source(path: Path) -> str:
    """Hash of a checkpoint file, or of every file of a checkpoint folder (sorted by name)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _torch_export(module: nn.Module, spec: GraphSpec, inputs: dict[str, np.ndarray], path: Path, opset: int) -> None:
    args = tuple(torch.from_numpy(inputs[n]) for n in spec.input_names)
    arg_names = list(module.forward.__code__.co_varnames[1:1 + len(args)])
    dims = {s: torch.export.Dim(s, min=1, max=65536) for s in ("B", "F")}
    dynamic = {a: {k: dims[d] for k, d in enumerate(t.shape) if isinstance(d, str)} or None
               for a, t in zip(arg_names, spec.inputs)}
    sink = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):  # the exporter narrates
        torch.onnx.export(module, args, str(path), input_names=list(spec.input_names),
                          output_names=list(spec.output_names), dynamic_shapes=dynamic, opset_version=opset,
                          dynamo=True, external_data=False)


def _validate(module: nn.Module, spec: GraphSpec, path: Path, num_classes: int) -> dict:
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inputs = spec.sample_inputs(CHECK_DIMS, seed=1, num_classes=num_classes)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, inputs)[0]
    with torch.no_grad():
        want = module(*(torch.from_numpy(inputs[n]) for n in spec.input_names)).numpy()
    if got.shape != want.shape:
        raise NervError(f"{path.name}: ONNX Runtime output shape {got.shape} != PyTorch {want.shape}")
    err = np.abs(got - want)
    result = {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}
    if spec.name == "decoder":
        mse = float(np.mean((got - want) ** 2))
        result["psnr_db"] = float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse))  # range [-1, 1]
    result["trt_unsupported_ops"] = unsupported_ops(model)
    return result


def export_checkpoint(ckpt: Checkpoint, ckpt_path: Path, out: Path, opset: int, max_frames: int, max_batch: int,
                      step: Callable[[str], None] | None = None) -> dict:
    """Write the graphs and manifest of one checkpoint into the (new, empty) folder `out`."""
    specs = graph_specs(ckpt.config)
    modules = graph_modules(*build_models(ckpt, "cpu"))
    graphs = {}
    for name in (g for g in GRAPHS if g in modules):
        if step:
            step(f"{ckpt.config.res}: {name}")
        spec, module, path = specs[name], modules[name], out / f"{name}.onnx"
        _torch_export(module, spec, spec.sample_inputs(TRACE_DIMS, num_classes=ckpt.config.num_classes), path, opset)
        validation = _validate(module, spec, path, ckpt.config.num_classes)
        if name == "decoder" and validation["psnr_db"] < MIN_DECODER_PSNR_DB:
            raise NervError(f"decoder.onnx parity is {validation['psnr_db']:.1f} dB PSNR against PyTorch, "
                            f"below the {MIN_DECODER_PSNR_DB:.0f} dB floor; the export is wrong")
        graphs[name] = {"file": path.name, "sha256": sha256_file(path), **spec.to_dict(), "validation": validation}
    import onnx
    import onnxruntime

    manifest = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
        "config": ckpt.config.to_dict(),
        "token_std": None if ckpt.token_std is None else [float(v) for v in ckpt.token_std],
        "checkpoint": {"path": str(ckpt_path), "sha256": sha256_source(ckpt_path)},
        "opset": opset,
        "limits": {"max_frames": max_frames, "max_batch": max_batch},
        "versions": {"nerv_rt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "graphs": graphs,
        "engines": {},
    }
    write_manifest(out, manifest)
    return manifest


def default_out_dir(source: str | Path) -> Path:
    return Path("engines") / source_name(source)


def export(source: str | Path, out: Path | None = None, opset: int = DEFAULT_OPSET,
           max_frames: int = DEFAULT_MAX_FRAMES, max_batch: int = DEFAULT_MAX_BATCH,
           step: Callable[[str], None] | None = None) -> Path:
    """Export every model of `source` into `out` (default engines/<name>/); one sub-folder per
    resolution when the source holds several. Atomic: nothing is left at `out` if a step fails."""
    if max_frames < 1 or max_batch < 1:
        raise NervError("--max-frames and --max-batch must be at least 1")
    models = resolve(source)
    if any(m.kind != "checkpoint" for m in models):
        raise NervError(f"{source}: already an export folder; export takes a checkpoint or 'default'")
    out = Path(out) if out is not None else default_out_dir(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, folder=True) as tmp:
        for m in models:
            folder = tmp if len(models) == 1 else tmp / str(m.config.res)
            folder.mkdir(exist_ok=True)
            export_checkpoint(m.checkpoint(), m.path, folder, opset, max_frames, max_batch, step)
    return out
