"""Checkpoint -> ONNX graphs + manifest.json, validated, written atomically.

Each graph is exported with torch.onnx (dynamo exporter, dynamic dims from `specs`), checked with
the ONNX checker, run on ONNX Runtime CPU against PyTorch on random inputs (at a dynamic size other
than the traced one), and scanned for operators TensorRT's parser does not take. With `precisions`,
fp16 / bf16 typed graphs are written beside the fp32 ones and validated against fp32 torch
(export/precision.py). Graphs exported into a float16 save_pretrained folder (the embedded default) read their
weights from its model.safetensors instead of holding a copy (export/shared_weights.py).
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .. import __version__
from ..checkpoint import Checkpoint, build_models
from ..errors import CheckpointError, NervError
from ..formats import (
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    FolderOutput,
    atomic_path,
    read_json,
    sha256_checkpoint,
    sha256_file,
)
from ..models.graphs import graph_modules
from ..models.stats import describe
from ..runtime.sources import default_export_dir, resolve
from .manifest import typed_file, write_manifest
from .precision import MIN_TYPED_DECODER_PSNR_DB, PRECISIONS, opset_for, store_fp16_initializers, torch_dtype
from .shared_weights import read_weights_from
from .specs import DEFAULT_MAX_BATCH, DEFAULT_MAX_FRAMES, GRAPHS, GraphSpec, graph_specs
from .trt_ops import OPSET_RANGE, unsupported_ops

DEFAULT_OPSET = MIN_OPSET = 18  # the dynamo exporter's lowest: asked for less, it writes 18 anyway
MIN_DECODER_PSNR_DB = 45.0
TRACE_DIMS = {"B": 2, "F": 16}  # traced sizes; validation runs other sizes to prove the dims are dynamic
CHECK_DIMS = {"B": 3, "F": 7}


# What an export writes into its folder: graphs (+ typed), AOTInductor packages, TensorRT engines and timing caches
_EXPORT_FILE = re.compile(rf"({'|'.join(GRAPHS)})(\.\w+)*\.(onnx|pt2|plan)|timing-.+\.cache|{re.escape(MANIFEST_FILE)}")


def holds_export_files(folder: Path, weights: bool = False) -> bool:
    """Whether `folder` holds an export's manifest and nothing but files an export (with `weights`, a packaged
    model: its checkpoint files too) writes: the test before replacing it, so that no other file is ever lost."""
    allowed = {CONFIG_FILE, WEIGHTS_FILE} if weights else set()
    try:
        read_json(folder / MANIFEST_FILE, EXPORT_FORMAT, EXPORT_VERSION, "export manifest")
    except CheckpointError:
        return False
    return all(e.is_file() and not e.is_symlink() and (e.name in allowed or _EXPORT_FILE.fullmatch(e.name))
               for e in folder.iterdir())


# One model's export, or one sub-folder per resolution (named by it) when the source held several
EXPORT_FOLDER = FolderOutput("an earlier export", lambda folder: holds_export_files(folder) or all(
    e.is_dir() and e.name.isdigit() and holds_export_files(e) for e in folder.iterdir()))


def onnx_model(module: nn.Module, args: tuple, input_names: list[str], output_names: list[str],
               dynamic: dict[str, dict[int, str] | None], opset: int) -> onnx.ModelProto:
    """torch.onnx (dynamo exporter) of module(*args) as a ModelProto, quietly; `dynamic` maps an input name to
    {axis: symbol} (symbols shared between inputs are the same dim). The exporter's per-node debug notes (stack
    traces with this machine's paths, fx node names; a third of a graph's file without its weights) are dropped."""
    dims = {s: torch.export.Dim(s, min=1, max=65536) for axes in dynamic.values() if axes for s in axes.values()}
    arg_names = list(module.forward.__code__.co_varnames[1:1 + len(args)])
    shapes = {a: ({k: dims[s] for k, s in dynamic[n].items()} if dynamic.get(n) else None)
              for a, n in zip(arg_names, input_names)}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # e.g. "torchvision is not installed"
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):  # the exporter narrates
        program = torch.onnx.export(module, args, input_names=input_names, output_names=output_names,
                                    dynamic_shapes=shapes, opset_version=opset, dynamo=True, external_data=False)
    model = program.model_proto
    for node in model.graph.node:
        del node.metadata_props[:]
    return model


def _torch_export(module: nn.Module, spec: GraphSpec, inputs: dict[str, np.ndarray], path: Path, opset: int,
                  weights: Path | None = None) -> bool:
    """Export and save one graph; with `weights` (the safetensors file beside `path`) its initializers that are
    tensors of that file read them from it. Returns whether any does."""
    args = tuple(torch.from_numpy(inputs[n]) for n in spec.input_names)
    dynamic = {t.name: {k: d for k, d in enumerate(t.shape) if isinstance(d, str)} or None for t in spec.inputs}
    model = onnx_model(module, args, list(spec.input_names), list(spec.output_names), dynamic, opset)
    store_fp16_initializers(model)
    shared = read_weights_from(model, weights) > 0 if weights is not None else False
    onnx.save(model, str(path))
    return shared


def _parity(got: np.ndarray, want: np.ndarray, graph: str) -> dict:
    err = np.abs(got - want)
    result = {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}
    if graph == "decoder":
        mse = float(np.mean((got - want) ** 2))
        result["psnr_db"] = float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse))  # range [-1, 1]
    return result


def _validate(reference: nn.Module, spec: GraphSpec, path: Path, num_classes: int, typed: nn.Module | None = None) -> dict:
    """Checker, op scan, and parity against the fp32 `reference` on inputs of untraced sizes: the graph on
    ONNX Runtime CPU, or where ORT has no kernels for its type (bf16) the typed torch module it was
    exported from (recorded as parity_runtime)."""
    import onnxruntime as ort

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    inputs = spec.sample_inputs(CHECK_DIMS, seed=1, num_classes=num_classes)
    args = tuple(torch.from_numpy(inputs[n]) for n in spec.input_names)
    with torch.no_grad():
        want = reference(*args).numpy()
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: the graph optimizer's notes on typed graphs are not the user's
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        got, runtime = session.run(None, inputs)[0], "onnxruntime"
    except Exception as e:  # ORT's CPU EP has no bf16 MatMul / Conv kernels: compare the module the graph came from
        if typed is None or "NOT_IMPLEMENTED" not in str(e):
            raise
        with torch.no_grad():
            got, runtime = typed(*args).float().numpy(), "torch"
    if got.shape != want.shape:
        raise NervError(f"{path.name}: output shape {got.shape} != PyTorch {want.shape}")
    return {**_parity(got, want, spec.name), "parity_runtime": runtime, "trt_unsupported_ops": unsupported_ops(model)}


def export_checkpoint(ckpt: Checkpoint, ckpt_path: Path, out: Path, opset: int, max_frames: int, max_batch: int,
                      precisions: Sequence[str] = ("fp32",), aoti_device: str | None = None,
                      step: Callable[[str], None] | None = None, graphs_wanted: Sequence[str] = GRAPHS) -> dict:
    """Write the graphs (fp32, plus each typed precision asked for), with `aoti_device` their AOTInductor
    packages for that device, and the manifest of one checkpoint into the folder `out` (new, or a
    save_pretrained folder: the graphs go beside the weights). `graphs_wanted` leaves graphs out (e.g. the
    encoder, which generation does not run)."""
    for p in precisions:
        if p not in PRECISIONS:
            raise NervError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    specs = graph_specs(ckpt.config)
    beside = ckpt_path.resolve() == out.resolve()  # a save_pretrained folder: the graphs read its weights file
    weights = out / WEIGHTS_FILE if beside and (out / WEIGHTS_FILE).is_file() else None
    external = {"external_data": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights)}} if weights else {}
    pick = lambda mods: {g: m for g, m in mods.items() if g in graphs_wanted}  # noqa: E731
    modules = pick(graph_modules(*build_models(ckpt, "cpu")))
    typed_modules = {p: {g: m.to(torch_dtype(p)) for g, m in pick(graph_modules(*build_models(ckpt, "cpu"))).items()}
                     for p in precisions if p != "fp32"}
    graphs = {}
    for name in (g for g in GRAPHS if g in modules):
        spec, module, path = specs[name], modules[name], out / typed_file(name, "fp32")
        if step:
            step(f"{ckpt.config.res}: {name}")
        trace = spec.sample_inputs(TRACE_DIMS, num_classes=ckpt.config.num_classes)
        reads_weights = _torch_export(module, spec, trace, path, opset, weights)
        validation = _validate(module, spec, path, ckpt.config.num_classes)
        if name == "decoder" and validation["psnr_db"] < MIN_DECODER_PSNR_DB:
            raise NervError(f"decoder.onnx parity is {validation['psnr_db']:.1f} dB PSNR against PyTorch, "
                            f"below the {MIN_DECODER_PSNR_DB:.0f} dB floor; the export is wrong")
        entry = {"file": path.name, "sha256": sha256_file(path), **(external if reads_weights else {}), **spec.to_dict(),
                 "validation": validation}
        for p, typed_set in typed_modules.items():
            if step:
                step(f"{ckpt.config.res}: {name} {p}")
            typed = typed_set[name]
            typed_path = out / typed_file(name, p)
            typed_reads_weights = _torch_export(typed, spec, trace, typed_path, opset_for(p, opset), weights)
            v = _validate(module, spec, typed_path, ckpt.config.num_classes, typed)
            if name == "decoder" and v["psnr_db"] < MIN_TYPED_DECODER_PSNR_DB:
                raise NervError(f"{typed_path.name} reaches {v['psnr_db']:.1f} dB PSNR against fp32 PyTorch, below "
                                f"the {MIN_TYPED_DECODER_PSNR_DB:.0f} dB floor: {p} is not accurate enough for this model")
            entry.setdefault("precisions", {})[p] = {"file": typed_path.name, "sha256": sha256_file(typed_path),
                                                     **(external if typed_reads_weights else {}),
                                                     "opset": opset_for(p, opset), "validation": v}
        graphs[name] = entry
    import onnxruntime

    aoti = {}
    if aoti_device is not None:
        from .aoti_export import export_aoti

        aoti = export_aoti(ckpt, out, aoti_device, precisions, TRACE_DIMS, CHECK_DIMS, step, graphs_wanted)
    manifest = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION,
        "config": ckpt.config.to_dict(),
        "token_std": None if ckpt.token_std is None else [float(v) for v in ckpt.token_std],
        "checkpoint": {"path": "." if beside else str(ckpt_path),  # "." = beside
                       "sha256": sha256_checkpoint(ckpt_path)},
        "stats": describe(ckpt.config, with_dit=ckpt.dit is not None),  # `nerv-rt info` reads it without torch
        "opset": opset,
        "limits": {"max_frames": max_frames, "max_batch": max_batch},
        "versions": {"nerv_rt": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
        "graphs": graphs,
        "aoti": aoti,
        "engines": {},
    }
    write_manifest(out, manifest)
    return manifest


def export(source: str | Path, out: Path | None = None, opset: int = DEFAULT_OPSET,
           max_frames: int = DEFAULT_MAX_FRAMES, max_batch: int = DEFAULT_MAX_BATCH,
           precisions: Sequence[str] = ("fp32",), aoti_device: str | None = None,
           step: Callable[[str], None] | None = None, graphs_wanted: Sequence[str] = GRAPHS) -> Path:
    """Export every model of `source` into `out` (default engines/<name>/); one sub-folder per
    resolution when the source holds several. Atomic: nothing is left at `out` if a step fails."""
    if max_frames < 1 or max_batch < 1:
        raise NervError("--max-frames and --max-batch must be at least 1")
    if not MIN_OPSET <= opset <= OPSET_RANGE[1]:
        raise NervError(f"--opset must be in {MIN_OPSET}..{OPSET_RANGE[1]} (torch's exporter writes {MIN_OPSET} or later, "
                        f"TensorRT parses up to {OPSET_RANGE[1]}), got {opset}")
    models = resolve(source)
    if any(not m.has_checkpoint for m in models):
        raise NervError(f"{source}: an export folder without weights; export takes a checkpoint or 'default'")
    out = Path(out) if out is not None else default_export_dir(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, folder=EXPORT_FOLDER) as tmp:
        for m in models:
            folder = tmp if len(models) == 1 else tmp / str(m.config.res)
            folder.mkdir(exist_ok=True)
            export_checkpoint(m.checkpoint(), m.checkpoint_path, folder, opset, max_frames, max_batch, precisions,
                              aoti_device, step, graphs_wanted)
    return out
