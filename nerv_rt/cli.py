"""`nerv-rt` command line: thin typer commands over the Python API.

Every user-fixable problem is a NervError; the group below prints it as one line on stderr and
exits with code 2 (no traceback). Bad option values (click's usage errors) get the same one line, and
nerv-rt's own warnings one `warning: ...` line.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import ON_COMMAND_LINE, NervError, interrupt, missing_extra, module_extra, require
from .models.presets import PRESETS
from .runtime.video_io import MAX_FPS, MIN_FPS

# typer vendors click (>= 0.20) or depends on it (older); its BadParameter is a click UsageError either way.
_UsageError = typer.BadParameter.__mro__[1]
# click >= 8.2 (and typer's own copy of it) raises this for `nerv-rt` or `nerv-rt train` alone; older ones print the help
_NoArgsIsHelp: type = getattr(sys.modules[_UsageError.__module__], "NoArgsIsHelpError", ())


def _one_line(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


_PACKAGE = Path(__file__).resolve().parent
_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """nerv-rt's own warnings as one line on stderr, `warning: ...`, as its errors are; others in Python's format,
    but for other libraries' deprecation notices (e.g. torch's own, raised inside torch.export), which a user of the
    command line cannot act on."""
    if Path(filename).resolve().is_relative_to(_PACKAGE):
        typer.echo(f"warning: {message}", err=True)
    elif issubclass(category, (DeprecationWarning, FutureWarning)):
        return
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


class _Group(typer.core.TyperGroup):
    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False  # errors come back here instead of click's multi-line usage report
        # SIGTERM (timeout, kill) stops like Ctrl-C, so nothing half-written stays behind
        previous = signal.signal(signal.SIGTERM, interrupt) if threading.current_thread() is threading.main_thread() else None
        on_command_line = ON_COMMAND_LINE.set(True)  # errors name flags (--refine-steps), not parameters
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _show_warning
                code = super().main(*args, **kwargs)
        except _NoArgsIsHelp as e:  # a command group alone: its help, as --help gives it
            typer.echo(e.ctx.get_help())
            code = 0
        except _UsageError as e:
            _one_line(f"{e.format_message()} (see --help)", e.exit_code)
        except typer.Abort:
            _one_line("aborted", 1)
        finally:
            ON_COMMAND_LINE.reset(on_command_line)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except NervError as e:
            _one_line(str(e), 2)
        except ModuleNotFoundError as e:  # an optional extra (or torch) this command needs
            if module_extra(e.name or "") is None:
                raise
            _one_line(str(missing_extra(e.name)), 2)


def _typer(help: str) -> typer.Typer:
    return typer.Typer(cls=_Group, help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                       pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})


app = _typer("nerv-rt: train, export, compile and run NeRV-Diffusion video generation.")
console = Console(stderr=True, soft_wrap=True)


def _fail(msg: str) -> None:
    raise NervError(msg)


def _number(lo: float, hi: float = math.inf, lo_open: bool = False):
    """An option callback: the value must be a finite number in [lo, hi] ((lo, hi] with lo_open; no upper bound
    without hi); nan and inf are refused like any other value out of range (typer's own min= lets them through)."""
    def check(value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and (lo < value if lo_open else lo <= value) and value <= hi):
            wanted = (f"a finite number {'>' if lo_open else '>='} {lo:g}" if hi == math.inf else
                      f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}]")
            raise typer.BadParameter(f"must be {wanted}, got {value}")
        return value
    return check


@contextlib.contextmanager
def _training_stage(out: Path) -> Iterator[None]:
    """A training stage run inside: its last line, OUT and the time it took; or, on Ctrl-C (or SIGTERM), one line
    saying which step --resume would continue from. Printed once: under torchrun by rank 0 alone."""
    rank0, t0 = os.environ.get("RANK", "0") == "0", time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        if rank0:
            if out.exists():
                from .checkpoint import load

                kept = f"{out} holds step {load(out).train_state.get('step')}; --resume continues from it"
            else:
                kept = "no checkpoint was written yet (one is every --ckpt-every steps), so there is nothing to resume"
            typer.echo(f"interrupted: {kept}", err=True)
        sys.exit(130)
    if rank0:
        typer.echo(f"{out} ({time.perf_counter() - t0:.0f} s)")


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # Drawn only on a terminal: piped or redirected, a transient bar would leave a blank line before the output
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------

@app.command()
def info(
    path: str | None = typer.Argument(None, help="'default' (the default unless --preset), a checkpoint (.pt or "
                                      "folder) or an export folder to describe."),
    preset: str | None = typer.Option(None, "--preset", "-p", help=f"A preset to describe instead of a model: "
                                      f"{', '.join(PRESETS)}."),
    res: int | None = typer.Option(None, "--res", "-r", help="Resolution (preset: 128 or 256, default 128; a model: "
                                   "one it holds, default all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (an object per model; a list for several)."),
) -> None:
    """Tokens, parameters per module and MACs (decoder per 16-frame video, DiT per forward) of the default model,
    of PATH or of a preset. Export folders (and the default model) carry these in their manifest: no torch needed."""
    if preset is not None:
        if path is not None:
            _fail(f"give a model or --preset, not both ({path} and --preset {preset})")
        rows = [_preset_stats(preset, res or 128)]
    else:
        path = path or "default"
        rows = _source_stats(path, res)
    if as_json:
        typer.echo(json.dumps(rows[0] if len(rows) == 1 else rows))
        return
    table = Table(title=path or f"preset {preset}")
    table.add_column("what")
    for d in rows:
        table.add_column(f"{d['preset']} @ {d['res']}^2", justify="right")
    table.add_row("tokens x dim", *(f"{d['tokens']} x {d['token_dim']}" for d in rows))
    for k in dict.fromkeys(k for d in rows for k in d["params"]):  # a VAE-only checkpoint has no "dit"
        table.add_row(f"params {k}", *(f"{d['params'][k] / 1e6:.2f} M" if k in d["params"] else "-" for d in rows))
    table.add_row("decoder MACs / 16-frame video", *(f"{d['macs']['decoder_16f'] / 1e9:.1f} G" for d in rows))
    table.add_row("DiT MACs / forward (batch 1)",
                  *(f"{d['macs']['dit_step'] / 1e9:.2f} G" if "dit_step" in d["macs"] else "-" for d in rows))
    Console().print(table)


def _preset_stats(name: str, res: int) -> dict:
    from .models.presets import preset as make_preset
    from .models.stats import describe  # torch (meta device)

    return describe(make_preset(name, res))  # a bad name or res is a ConfigError, a NervError


def _source_stats(source: str, res: int | None) -> list[dict]:
    from .runtime.sources import resolve

    models = resolve(source)
    if res is not None:
        models = [m for m in models if m.config.res == res]
        if not models:
            _fail(f"{source} holds resolutions {', '.join(str(m.config.res) for m in resolve(source))}, not {res}")
    out = []
    for m in models:
        if m.has_graphs and "stats" in m.manifest:
            out.append(m.manifest["stats"])
        else:
            from .checkpoint import has_dit
            from .models.stats import describe  # torch (meta device)

            out.append(describe(m.config, with_dit=has_dit(m.checkpoint_path)))
    return out


# --------------------------------------------------------------------------------------------
# export / build
# --------------------------------------------------------------------------------------------

@app.command()
def export(
    ckpt: str = typer.Argument(..., help="Checkpoint .pt, save_pretrained folder, or 'default' (the embedded model)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: engines/<name>/)."),
    opset: int = typer.Option(18, help="ONNX opset of the fp32 / fp16 graphs, 18-24 (bf16 graphs use 22 or more)."),
    max_frames: int = typer.Option(16, help="Most frames per decoder call (TensorRT profile; `generate --chunk` "
                                   "above it is split into calls of this size)."),
    max_batch: int = typer.Option(4, help="Most videos per DiT call (the DiT profile goes to 2x for CFG)."),
    precision: list[str] = typer.Option([], help="Also write precision-typed graphs (repeatable): fp16, bf16. "
                                        "Each is validated against fp32 PyTorch (decoder >= 35 dB)."),
    trt: bool = typer.Option(False, "--trt", help="Also build TensorRT engines, one per precision (needs a CUDA GPU "
                             "and tensorrt)."),
    aoti: bool = typer.Option(False, "--aoti", help="Also compile AOTInductor packages (.pt2) of every graph and "
                              "precision for --device: the aoti backend, valid on this torch and this CPU / GPU."),
    device: str | None = typer.Option(None, help="Device the --aoti packages are compiled for: cpu (default) or "
                                      "cuda. ONNX graphs are the same for every device."),
) -> None:
    """Export a checkpoint to ONNX (dit, decoder, encoder) with a manifest; every graph is validated
    against PyTorch on ONNX Runtime and checked against TensorRT's operator list."""
    if device is not None and not aoti:  # it would be ignored: the graphs are device-free
        _fail(f"--device {device} is for --aoti (the device its packages are compiled for); ONNX graphs are the same "
              "for every device")
    require("torch", "safetensors", "onnx", "onnxscript", extra="export")
    from .export.onnx_export import export as run_export

    if trt:
        from .export.trt_build import import_tensorrt

        import_tensorrt()  # fail before exporting, not after
    with console.status("exporting") as status:
        folder = run_export(ckpt, out, opset, max_frames, max_batch, ("fp32", *precision), (device or "cpu") if aoti else None,
                            step=lambda s: status.update(f"exporting {s}"))
    _print_export_summary(folder)
    if trt:
        for p in precision or ["fp32"]:
            _build(folder, p, max_batch=None, max_frames=None, workspace=4.0)
    typer.echo(str(folder))


def _print_export_summary(folder: Path) -> None:
    from .runtime.sources import resolve

    for m in resolve(folder):
        for g in m.manifest["graphs"].values():
            for entry in (g, *g.get("precisions", {}).values()):
                v = entry["validation"]
                psnr = f", {v['psnr_db']:.1f} dB" if "psnr_db" in v else ""
                ops = "all TensorRT-supported" if not v["trt_unsupported_ops"] else f"NOT in TensorRT: {v['trt_unsupported_ops']}"
                console.print(f"{m.config.res}/{entry['file']}: max |{v['parity_runtime']} - torch fp32| "
                              f"{v['max_abs_err']:.2e}{psnr}; ops {ops}")
        for file, e in m.manifest.get("aoti", {}).items():
            v = e["validation"]
            psnr = f", {v['psnr_db']:.1f} dB" if "psnr_db" in v else ""
            console.print(f"{m.config.res}/{file}: max |aoti - torch eager fp32| {v['max_abs_err']:.2e}{psnr}")


@app.command()
def build(
    folder: str = typer.Argument(..., help="Export folder (from `nerv-rt export`)."),
    precision: str = typer.Option("auto", help="fp32, fp16 or bf16: the engines are built strongly typed from the "
                                  "export's graphs of that precision (`nerv-rt export --precision`); auto: fp16 "
                                  "where the export has fp16 graphs, else bf16 where it has those, else fp32."),
    max_batch: int | None = typer.Option(None, help="Most videos per DiT call (default: the export's)."),
    max_frames: int | None = typer.Option(None, help="Most frames per decoder call (default: the export's)."),
    workspace: float = typer.Option(4.0, callback=_number(0, 1024, lo_open=True), help="Builder workspace limit in GB."),
) -> None:
    """Build TensorRT engines from an export folder. An engine is reused while its key (ONNX sha256,
    precision, profiles, TensorRT version, GPU and compute capability, builder settings) is unchanged."""
    _build(folder, precision, max_batch, max_frames, workspace)


def _build(folder: str | Path, precision: str, max_batch: int | None, max_frames: int | None, workspace: float) -> None:
    """`build` of a source as given: a Path (export --trt's output) is a folder even when it is named 'default'."""
    from .export.trt_build import build_engines
    from .runtime.sources import ASSETS_DIR, resolve

    for m in resolve(folder):
        if m.path.resolve().is_relative_to(ASSETS_DIR):  # plans and manifest would be written into the package
            _fail("the embedded default model is part of the installed package; export it first (`nerv-rt export "
                  "default`), then build the folder it writes: `nerv-rt build engines/default`")
        if not m.has_graphs:
            _fail(f"{m.path}: not an export folder; run `nerv-rt export` first")
        build_engines(m.path, m.manifest, precision, max_batch, max_frames, workspace, step=lambda s: console.print(s))


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------

@app.command()
def generate(
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    frames: int = typer.Option(16, "--frames", "-f", help="Frames per video (1-4096). The clip keeps the training "
                               "clip's duration: more frames are a finer interpolation at a higher frame rate "
                               "(see --fps)."),
    res: int | None = typer.Option(None, "--res", "-r", help="Resolution, one the model has (default: its smallest)."),
    n: int = typer.Option(1, "--n", help="Number of videos. Several go to <out stem>-0<ext>, -1, ... (clip-0.mp4, "
                          "clip-1.mp4), sampled in batches and written one file at a time."),
    seed: int = typer.Option(0, help="Seed: video i of a seed is the same on every backend and at any --n."),
    steps: int = typer.Option(50, help="Sampler steps (the paper's protocol: --sampler ddpm --steps 250)."),
    sampler: str = typer.Option("ddim", help="ddim or ddpm."),
    guidance: float = typer.Option(2.0, callback=_number(0, 50), help="Classifier-free guidance scale (1 = off)."),
    class_label: str | None = typer.Option(None, "--class", help="Class index or name, e.g. pan_left (default: random per video)."),
    backend: str = typer.Option("auto", help="auto, torch, torch-cudagraph, onnxruntime, tensorrt or aoti."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32; fp16 or bf16 on CUDA; an export's fp16 graphs run on "
                                  "the CPU too (onnxruntime). Exported models need typed graphs of that precision."),
    cuda_graph: bool | None = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="CUDA graphs (default: whole "
                                           "loop on torch-cudagraph, tensorrt and aoti; off on onnxruntime)."),
    chunk: int = typer.Option(16, help="Frames per decoder call: memory stays flat as --frames grows."),
    fps: float | None = typer.Option(None, callback=_number(MIN_FPS, MAX_FPS), help="Frame rate of the written "
                                     "video (default: the training clips' rate x frames / clip length, so that the "
                                     "duration stays, up to 1000; give it to play the frames slower or faster; a "
                                     ".gif plays at most 50)."),
    out: Path = typer.Option(Path("clip.mp4"), "--out", "-o", help="Output: .mp4, .gif, or a folder (PNG frames)."),
) -> None:
    """Generate videos: the DiT samples weight tokens, the NeRV decoder renders the frames."""
    from .runtime.pipeline import Pipeline, check_frames, check_sampling, default_fps
    from .runtime.video_io import check_output_path, output_paths, played_fps

    # 1. Check everything before any work: a bad argument must not cost a sampling run
    check_frames(frames)
    check_sampling(steps, sampler, guidance, 0.0, n, seed)
    check_output_path(out, n)
    pipe = Pipeline.load(model, backend=backend, device=device, precision=precision, cuda_graph=cuda_graph)
    m = pipe.model(res)
    pipe.class_index(class_label, m.config)
    pipe.check_chunk(chunk, m.config.res, frames)
    m.load_graphs()
    fps = default_fps(m.config, frames) if fps is None else fps
    paths = output_paths(out, n)
    console.print(f"{model} at {m.config.res}^2 on {pipe.describe()}")
    # 2. Sample a batch of videos, write each of them frame chunk by chunk, then the next batch
    timings = {"sample_s": 0.0, "decode_s": 0.0, "write_s": 0.0}
    done: list[Path] = []  # the files written whole, for a Ctrl-C's line
    writing: tuple[Path, float] | None = None  # the file being written, and since when
    try:
        with _progress() as bar:
            task = bar.add_task("sampling", total=n * steps)
            for first in range(0, n, m.sample_batch):
                count = min(m.sample_batch, n - first)
                bar.update(task, description=f"sampling videos {first + 1}-{first + count} of {n}")
                t0 = time.perf_counter()
                tokens = pipe.sample_tokens(m.config.res, count, class_label, steps, sampler, guidance, 0.0, seed,
                                            progress=lambda i, _, first=first: bar.update(task, completed=first * steps + i),
                                            first=first)
                pipe.synchronize()
                timings["sample_s"] += time.perf_counter() - t0
                bar.update(task, description=f"writing videos {first + 1}-{first + count} of {n}")
                for k, path in enumerate(paths[first:first + count]):
                    writing, written = (path, time.time()), {}
                    pipe.render(tokens[k:k + 1], [path], frames, m.config.res, chunk, fps, written)
                    timings["decode_s"] += written["decode_s"]
                    timings["write_s"] += written["write_s"]
                    done.append(path)
    except KeyboardInterrupt:
        if writing and writing[0] not in done and writing[0].exists() and writing[0].stat().st_mtime >= writing[1]:
            done.append(writing[0])  # moved into place just before the interrupt
        if done and n > 1:
            span = str(done[0]) if len(done) == 1 else f"{done[0]} to {done[-1]}"
            typer.echo(f"interrupted: {len(done)} of {n} videos written whole ({span}); none of the others", err=True)
        raise
    for p in paths:
        typer.echo(str(p))
    console.print(f"sample {timings['sample_s']:.2f} s | decode {timings['decode_s']:.2f} s | write "
                  f"{timings['write_s']:.2f} s ({n} x {frames} frames at {m.config.res}^2, {played_fps(out, fps):.4g} fps)")


# --------------------------------------------------------------------------------------------
# data / train
# --------------------------------------------------------------------------------------------

data_app = _typer("Training data.")
train_app = _typer("Train NeRV-VAE, then the implicit DiT (also under torchrun for DDP).")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write <motion>/<index>.mp4 into."),
    n: int = typer.Option(512, "--n", help="Number of clips (balanced over the motion kinds)."),
    seed: int = typer.Option(0, min=0, help="Seed; clip i depends only on (seed, i)."),
    res: int = typer.Option(128, "--res", "-r", help="Frame size."),
    frames: int = typer.Option(16, "--frames", "-f", help="Frames per clip."),
    workers: int = typer.Option(0, "--workers", "-j", help="Processes making clips (0: one per CPU)."),
) -> None:
    """Write the synthetic set: pans / zooms over scikit-image's photos and moving shapes, as .mp4.

    The folder appears only when every clip is written; --out must not exist or be an empty folder."""
    require("scipy", "skimage", extra="train")
    from .data.synthetic import default_workers, write_synthetic

    if n < 1 or res < 16 or res % 2 or frames < 1 or workers < 0:
        _fail("--n and --frames must be >= 1, --workers >= 0 and --res an even number >= 16")
    with _progress() as bar:
        task = bar.add_task("writing clips", total=n)
        written = write_synthetic(out, n, seed, res, frames, progress=lambda: bar.advance(task),
                                  workers=workers or default_workers())
    typer.echo(f"{out} ({n} clips, {len({p.parent.name for p in written})} classes)")  # clip i is class i mod 8


def _train_precision(value: str) -> str:
    from .train.precision import check_precision

    try:
        check_precision(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return value


TRAIN_PRECISION = typer.Option("auto", callback=_train_precision, help="Compute precision of the steps: auto (bf16 "
                               "autocast on CUDA, fp32 on the CPU), fp32, or bf16 (autocast on either; on the "
                               "AVX512-BF16 CPU it was measured on, 1.4-2.0x faster steps). Weights and optimizer "
                               "state stay fp32.")


def _train_common(out: Path, device: str):
    require("torch", "safetensors", "scipy", "skimage", extra="train")
    from .train.common import pick_device

    pick_device(device)  # fail early on --device cuda without a GPU
    if out.suffix != ".pt":
        _fail(f"--out {out}: training writes a .pt checkpoint")


@train_app.command("vae")
def train_vae_cmd(
    data: Path = typer.Argument(..., help="Folder of videos (class sub-folders give labels)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt), saved every --ckpt-every steps."),
    preset: str = typer.Option("tiny", "--preset", "-p", help=f"Model preset: {', '.join(PRESETS)}."),
    res: int = typer.Option(128, "--res", "-r", help="Resolution: 128 or 256."),
    steps: int = typer.Option(2000, min=1, help="Optimizer steps."),
    batch: int = typer.Option(8, min=1, help="Global batch of clips (split over DDP processes)."),
    frames_per_step: int = typer.Option(4, min=2, help="Frames of each clip the decoder is supervised on per step (2 or "
                                        "more: the temporal term compares consecutive ones)."),
    lr: float = typer.Option(3e-4, callback=_number(0), help="Peak learning rate (warm-up, then cosine to 10%)."),
    gan_start: float = typer.Option(0.6, callback=_number(0, 1), help="Fraction of steps before the GAN loss starts."),
    gan_weight: float = typer.Option(0.05, callback=_number(0), help="Weight of the hinge GAN loss (0 disables the "
                                     "discriminator)."),
    temporal_weight: float = typer.Option(1.0, callback=_number(0), help="Weight of the L2 on frame-to-frame changes (motion)."),
    kl_weight: float = typer.Option(1e-6, callback=_number(0), help="Weight of the KL term (summed over tokens)."),
    perceptual_weight: float = typer.Option(0.1, callback=_number(0), help="Weight of the perceptual term (LPIPS or its "
                                            "substitute)."),
    lpips: Path | None = typer.Option(None, help="Local TorchScript LPIPS file; default: the weight-free substitute."),
    init: Path | None = typer.Option(None, help="Start from a VAE checkpoint of the same preset (e.g. its 128 model "
                                     "at 256): each tensor's overlapping block."),
    ckpt_every: int = typer.Option(250, min=1, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, min=0, help="Seed of weights and data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = TRAIN_PRECISION,
) -> None:
    """Train NeRV-VAE: L2 + perceptual + hinge GAN (after a warm-up) + KL. Writes OUT and its log, OUT with .csv."""
    _train_common(out, device)  # first: names the train extra when torch or its data libraries are missing
    from .models.presets import preset as make_preset
    from .train.vae import VAETrainConfig, train_vae

    cfg = make_preset(preset, res)
    tcfg = VAETrainConfig(steps=steps, batch=batch, frames_per_step=frames_per_step, lr=lr, gan_start=gan_start,
                          gan_weight=gan_weight, kl_weight=kl_weight, perceptual_weight=perceptual_weight,
                          temporal_weight=temporal_weight,
                          ckpt_every=ckpt_every, seed=seed, lpips=str(lpips) if lpips else None, precision=precision)
    with _training_stage(out):
        train_vae(data, out, cfg, tcfg, device, resume, init, out.with_suffix(".csv"))


@train_app.command("dit")
def train_dit_cmd(
    data: Path = typer.Argument(..., help="The videos the VAE was trained on (or others with the same classes)."),
    vae: Path = typer.Option(..., "--vae", help="VAE checkpoint: from `nerv-rt train autodecode` (its bank is what the DiT learns) or `train vae`."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt): VAE + DiT + EMA + token std."),
    steps: int = typer.Option(4000, min=1, help="Optimizer steps."),
    batch: int = typer.Option(64, min=1, help="Global batch of token sets."),
    lr: float = typer.Option(2e-4, callback=_number(0), help="Peak learning rate."),
    ema: float = typer.Option(0.999, callback=_number(0, 0.99999), help="EMA decay of the DiT weights (the model "
                              "samples with the EMA: after N steps it still holds ema^N of the untrained start, "
                              "0.25 % at 0.999 and 6000 steps)."),
    tokens: str = typer.Option("auto", help="What to learn to generate: bank (the autodecoder's per-video tokens), "
                               "encoder (posteriors of clips), refined (the default encoding: encoder + the model's refinement steps), "
                               "or auto (bank when --vae holds one)."),
    clips_per_video: int = typer.Option(4, min=1, help="Token sets encoded per video (random clip positions; encoder and "
                                        "refined tokens)."),
    prediction: str = typer.Option("v", help="What the DiT's last layer predicts: v (well-conditioned at high noise) "
                                   "or eps (the DiT paper's). It returns eps either way."),
    scheduled_sampling: float = typer.Option(0.5, help="Final probability (reached at 30% of the steps) of feeding the "
                                             "DiT its own one-step estimate; 0 turns it off (each step then costs "
                                             "one forward less).", callback=_number(0, 1)),
    ckpt_every: int = typer.Option(500, min=1, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, min=0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = TRAIN_PRECISION,
) -> None:
    """Train the implicit DiT on tokens of the frozen VAE (Min-SNR-5, v-prediction, scheduled sampling, EMA, CFG
    dropout)."""
    _train_common(out, device)
    from .train.dit import DiTTrainConfig, train_dit

    tcfg = DiTTrainConfig(steps=steps, batch=batch, lr=lr, ema=ema, clips_per_video=clips_per_video, tokens=tokens,
                          prediction=prediction, scheduled_sampling=scheduled_sampling, ckpt_every=ckpt_every,
                          seed=seed, precision=precision)
    with _training_stage(out):
        train_dit(data, vae, out, tcfg, device, resume, out.with_suffix(".csv"))


@train_app.command("autodecode")
def train_autodecode_cmd(
    data: Path = typer.Argument(..., help="The videos the VAE was trained on: one token set per video (its first clip)."),
    init: Path = typer.Option(..., "--init", help="Checkpoint to fine-tune: a VAE, or VAE + DiT (carried over); an "
                              "autodecode run's bank carries over too (else the bank starts at the encoder's means)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt), saved every --ckpt-every steps."),
    steps: int = typer.Option(4000, min=1, help="Optimizer steps."),
    batch: int = typer.Option(8, min=1, help="Videos per step."),
    frames_per_step: int = typer.Option(4, min=2, help="Frames of each clip rendered per step (2 or more: the "
                                        "temporal term compares consecutive ones)."),
    lr: float = typer.Option(5e-4, callback=_number(0), help="Decoder peak learning rate (warm-up, then cosine to 10%); 0 freezes "
                             "the decoder."),
    token_lr: float = typer.Option(1e-2, callback=_number(0), help="Learning rate of the per-video tokens (sparse Adam); 0 freezes "
                                   "the bank (with --lr 0: an encoder-only stage)."),
    temporal_weight: float = typer.Option(1.0, callback=_number(0), help="Weight of the L2 on frame-to-frame changes (motion)."),
    encoder_weight: float = typer.Option(0.1, callback=_number(0), help="Encoder's L2 onto the bank's tokens (it also renders through "
                                         "the decoder); 0 keeps the encoder frozen."),
    encoder_lr: float = typer.Option(2e-4, callback=_number(0), help="Encoder peak learning rate; 0 freezes it."),
    token_noise: float = typer.Option(0.0, callback=_number(0), help="Gaussian noise on the tokens the decoder renders from, times "
                                      "the bank's std: points near an entry render its clip (class between entries)."),
    refine_steps: int = typer.Option(80, min=0, help="Token refinement steps stored as the output's default encoding."),
    ckpt_every: int = typer.Option(250, min=1, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, min=0, help="Seed of the data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = TRAIN_PRECISION,
) -> None:
    """Fine-tune the VAE with free per-video tokens (autodecoder): the decoder and a token bank on L2 + the
    temporal term, the encoder regressing the bank. Then train the DiT on the bank (`train dit`). The output
    encodes new clips with --refine-steps token refinement steps by default."""
    _train_common(out, device)
    from .train.autodecode import AutodecodeConfig, train_autodecode

    tcfg = AutodecodeConfig(steps=steps, batch=batch, frames_per_step=frames_per_step, lr=lr, token_lr=token_lr,
                            temporal_weight=temporal_weight, encoder_weight=encoder_weight, encoder_lr=encoder_lr,
                            token_noise=token_noise, ckpt_every=ckpt_every, seed=seed, refine_steps=refine_steps,
                            precision=precision)
    with _training_stage(out):
        train_autodecode(data, init, out, tcfg, device, resume, out.with_suffix(".csv"))


@train_app.command("encoder")
def train_encoder_cmd(
    data: Path = typer.Argument(..., help="Folder of clips to fit the encoder on (need not be the bank's videos: more "
                                "clips than the bank holds keep the encoder from overfitting)."),
    init: Path = typer.Option(..., "--init", help="A finished checkpoint (after `train dit`): its decoder stays frozen, "
                              "everything but the encoder carries over."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt), saved every --ckpt-every steps."),
    steps: int = typer.Option(3000, min=1, help="Optimizer steps."),
    batch: int = typer.Option(8, min=1, help="Clips per step."),
    frames_per_step: int = typer.Option(4, min=2, help="Frames of each clip rendered per step (2 or more: the "
                                        "temporal term compares consecutive ones)."),
    lr: float = typer.Option(1e-3, callback=_number(0), help="Encoder peak learning rate (warm-up, then cosine to 10%)."),
    temporal_weight: float = typer.Option(1.0, callback=_number(0), help="Weight of the L2 on frame-to-frame changes (motion)."),
    refine_steps: int = typer.Option(None, min=0, help="Token refinement steps stored as the output's default encoding "
                                     "(default: the checkpoint's)."),
    ckpt_every: int = typer.Option(250, min=1, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, min=0, help="Seed of the data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = TRAIN_PRECISION,
) -> None:
    """Fit the encoder alone against the checkpoint's frozen decoder: the decoder's renders of the encoder's tokens
    on L2 + the temporal term. Raises what the encoder gives alone (and token refinement's first guess)."""
    _train_common(out, device)
    from .train.encoder import EncoderStageConfig, train_encoder

    tcfg = EncoderStageConfig(steps=steps, batch=batch, frames_per_step=frames_per_step, lr=lr,
                              temporal_weight=temporal_weight, ckpt_every=ckpt_every, seed=seed,
                              refine_steps=refine_steps, precision=precision)
    with _training_stage(out):
        train_encoder(data, init, out, tcfg, device, resume, out.with_suffix(".csv"))


@train_app.command("classifier")
def train_classifier_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write classifier.onnx + classifier.json into; "
                             "`eval gen --classifier DIR` judges with it. `--out nerv_rt/assets/classifier` in a "
                             "checkout replaces the shipped one."),
    clips: int = typer.Option(2048, min=16, help="Training clips of the synthetic set's seed 0."),
    steps: int = typer.Option(6000, min=1, help="Optimizer steps."),
    seed: int = typer.Option(0, min=0, help="Seed of weights and batches."),
) -> None:
    """Train the synthetic-domain video classifier that `eval gen` judges generated clips with (motion kind);
    reports its accuracy on held-out clips (seed 1)."""
    require("torch", "scipy", "skimage", "onnx", "onnxscript", extra="train")
    from .train.classifier import ClassifierTrainConfig, train_classifier
    from .train.common import progress_bar

    cfg = ClassifierTrainConfig(clips=clips, steps=steps, seed=seed)
    command = f"nerv-rt train classifier --out {out} --clips {clips} --steps {steps} --seed {seed}"
    with progress_bar(True) as bar:
        meta = train_classifier(out, cfg, command, bar)
    typer.echo(f"{out} (held-out accuracy {100 * meta['heldout_accuracy']:.1f} % on {meta['heldout_clips']} clips)")


# --------------------------------------------------------------------------------------------
# reconstruct / eval
# --------------------------------------------------------------------------------------------

eval_app = _typer("Evaluate models.")
app.add_typer(eval_app, name="eval")
REFINE_HELP = ("Adam steps on each clip's weight tokens after the encoder (semi-amortized encoding; torch "
               "backends). Default: the model's own (its config's refine_steps; 0 on onnxruntime / tensorrt / aoti).")
ENCODE_BACKEND_HELP = ("auto, torch, onnxruntime, tensorrt or aoti. auto: torch when it is installed and the model has "
                       "weights (the model's default encoding refines tokens with autograd), else what generate picks.")


def _encoding_backend(backend: str, model: str) -> str:
    """`auto` for encoding: the torch backend where it can run, since the model's default encoding may refine
    the encoder's tokens with autograd; otherwise (e.g. the torch-free install) what auto picks."""
    from .engines.select import installed
    from .runtime.sources import resolve

    if backend == "auto" and installed("torch") and all(m.has_checkpoint for m in resolve(model)):
        return "torch"
    return backend


@app.command()
def reconstruct(
    video: Path = typer.Argument(..., help="Input video file."),
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    res: int | None = typer.Option(None, "--res", "-r", help="Model resolution (default: the smallest)."),
    out: Path = typer.Option(Path("side_by_side.mp4"), "--out", "-o", help="Output (.mp4, .gif or folder)."),
    backend: str = typer.Option("auto", help=ENCODE_BACKEND_HELP),
    fps: float | None = typer.Option(None, callback=_number(MIN_FPS, MAX_FPS), help="Frame rate of the output "
                                     "(default: the model's training clips')."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=0, help=REFINE_HELP),
) -> None:
    """Encode the first clip of VIDEO to weight tokens and render it back, input | reconstruction."""
    import numpy as np

    from .evaluate.metrics import motion
    from .evaluate.recon import clip_metrics, reconstruct_clip
    from .formats import check_not_input
    from .runtime.pipeline import Pipeline
    from .runtime.video_io import check_output_path, save_video

    check_output_path(out)
    check_not_input(out, video)
    pipe = Pipeline.load(model, backend=_encoding_backend(backend, model))
    clip, recon = reconstruct_clip(pipe, video, res, refine_steps)
    save_video(np.concatenate([clip, recon], axis=2), out, fps=fps or pipe.model(res).config.fps)
    psnr, ssim = clip_metrics(clip, recon)
    steps = pipe.default_refine_steps(res) if refine_steps is None else refine_steps
    size = pipe.model(res).config.res
    typer.echo(str(out))
    console.print(f"PSNR {psnr:.2f} dB | SSIM {ssim:.4f} | motion {motion(recon):.1f} vs {motion(clip):.1f} "
                  f"(mean |last - first frame|, /255) | {steps} refinement steps | the first {len(clip)} frames, "
                  f"shorter side resized to {size} and centre-cropped | {pipe.describe()}")


@eval_app.command("recon")
def eval_recon(
    data: Path = typer.Argument(..., help="Folder of videos."),
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    res: int | None = typer.Option(None, "--res", "-r", help="Model resolution (default: the smallest)."),
    backend: str = typer.Option("auto", help=ENCODE_BACKEND_HELP),
    limit: int | None = typer.Option(None, min=1, help="Evaluate at most this many clips."),
    i3d: Path | None = typer.Option(None, help="Local TorchScript I3D file: also report reconstruction FVD."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=0, help=REFINE_HELP),
) -> None:
    """Mean PSNR / SSIM and motion ratio of reconstructions over the first clip of every video (FVD with --i3d)."""
    from .evaluate.recon import evaluate_reconstruction
    from .runtime.pipeline import Pipeline

    pipe = Pipeline.load(model, backend=_encoding_backend(backend, model))
    with _progress() as bar:
        task = bar.add_task("reconstructing", total=None)
        result = evaluate_reconstruction(pipe, data, res, limit, i3d, refine_steps,
                                         progress=lambda k, total: bar.update(task, completed=k, total=total))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        fvd = f" | FVD {result['fvd']:.1f}" if "fvd" in result else ""
        typer.echo(f"PSNR {result['psnr']:.2f} dB | SSIM {result['ssim']:.4f} | motion ratio {result['motion_ratio']:.2f}"
                   f"{fvd} over {result['clips']} clip{'s' * (result['clips'] != 1)}, {result['refine_steps']} refinement "
                   f"steps ({result['backend']})")


@eval_app.command("gen")
def eval_gen(
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    res: int | None = typer.Option(None, "--res", "-r", help="Model resolution (default: the smallest)."),
    n_per_class: int = typer.Option(16, "--n-per-class", help="Generated clips per class (real clips: twice as many)."),
    steps: int = typer.Option(50, help="Sampler steps."),
    sampler: str = typer.Option("ddim", help="ddim or ddpm."),
    guidance: float = typer.Option(2.0, callback=_number(0, 50), help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, min=0, help="Seed of the generated clips."),
    real: Path | None = typer.Option(None, help="Folder of real clips, one sub-folder per class name (default: the "
                                     "synthetic set's held-out seed, made in memory)."),
    classifier: Path | None = typer.Option(None, help="Classifier folder (classifier.onnx + classifier.json; default: "
                                           "the shipped synthetic-domain one)."),
    i3d: Path | None = typer.Option(None, help="Local TorchScript I3D file: also report FVD."),
    backend: str = typer.Option("auto", help="auto, torch, torch-cudagraph, onnxruntime, tensorrt or aoti."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Generated clips against real clips of the same classes: motion ratio, class accuracy (with the
    confusion matrix), a Frechet distance in the classifier's features with its real-vs-real floor, FVD
    with --i3d."""
    if real is None:  # the synthetic set's held-out clips are made in memory from scikit-image's photos
        require("scipy", "skimage", extra="train")
    from .evaluate.classifier import CLASSIFIER_DIR
    from .evaluate.gen import evaluate_generation
    from .runtime.pipeline import Pipeline

    pipe = Pipeline.load(model, backend=backend, device=device)
    with console.status("eval gen") as status:
        r = evaluate_generation(pipe, res, n_per_class, steps, sampler, guidance, seed, real, i3d,
                                classifier or CLASSIFIER_DIR, progress=lambda s: status.update(f"eval gen: {s}"))
    if as_json:
        typer.echo(json.dumps(r))
        return
    table = Table(title=f"{model} at {r['res']}^2: {n_per_class} generated clips per class vs {r['real']}")
    for col in ("class", "motion ratio", "class accuracy"):
        table.add_column(col, justify="right")
    for c in r["classes"]:
        acc = r.get("class_accuracy_per_class", {}).get(c)
        table.add_row(c, f"{r['motion_ratio_per_class'][c]:.2f}", "-" if acc is None else f"{100 * acc:.0f} %")
    acc = r["class_accuracy"]
    table.add_row("all", f"{r['motion_ratio']:.2f}", "-" if acc is None else f"{100 * acc:.0f} %")
    Console().print(table)
    f = r["frechet"]
    real_acc = r["classifier"].get("real_accuracy")  # absent where the classifier does not know the classes
    judge = (f"classifier accuracy on real clips {100 * real_acc:.0f} %" if real_acc is not None else
             "the classifier does not know these classes: no class accuracy, distance in its features only")
    typer.echo(f"Frechet distance (classifier features) {f['generated_vs_real']:.2f}, real-vs-real floor "
               f"{f['real_vs_real_floor']:.2f} ({f['ratio']:.1f}x) | {judge}"
               + (f" | FVD {r['fvd']:.1f}" if "fvd" in r else "") + f" | {r['backend']}")


# --------------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------------

@app.command()
def serve(
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    backend: str = typer.Option("auto", help="auto, onnxruntime, torch, torch-cudagraph, tensorrt or aoti."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32; fp16 or bf16 on CUDA; an export's fp16 graphs run on the CPU "
                                  "too (onnxruntime)."),
    replicas: int = typer.Option(1, min=1, help="Replicas of the generator (each loads the model)."),
    min_replicas: int | None = typer.Option(None, min=0, help="Autoscale between --min-replicas and --max-replicas "
                                            "by ongoing requests (instead of --replicas)."),
    max_replicas: int | None = typer.Option(None, min=1, help="See --min-replicas."),
    num_gpus: float = typer.Option(0.0, callback=_number(0, 64), help="GPUs per replica (e.g. 1 for cuda backends)."),
    num_cpus: float = typer.Option(1.0, callback=_number(0, 1024), help="CPUs per replica."),
    max_batch: int = typer.Option(8, min=1, help="Most requests per batch; requests with the same (res, steps, "
                                  "sampler, guidance) share one sampling run."),
    batch_wait_ms: float = typer.Option(50.0, callback=_number(0, 60000), help="Longest a request waits for others "
                                        "to join its batch."),
    host: str | None = typer.Option(None, help="Address to listen on (default: 127.0.0.1; with --address, 0.0.0.0: "
                                    "every interface, as a cluster's proxies must be reachable)."),
    port: int = typer.Option(8000, min=1, max=65535, help="HTTP port."),
    address: str | None = typer.Option(None, help="Join this Ray cluster (e.g. auto, or ray://head:10001) instead "
                                       "of starting Ray here."),
) -> None:
    """Serve generation over HTTP with Ray Serve: POST /generate (JSON: class, seed, frames, res, steps, sampler,
    guidance, format) returns the clip; GET /models; GET /healthz. Runs until Ctrl-C."""
    require("ray", "starlette", extra="serve")
    from .serve.app import ServeOptions
    from .serve.run import serve_until_interrupted

    options = ServeOptions(model=model, backend=backend, device=device, precision=precision, max_batch=max_batch,
                           batch_wait_ms=batch_wait_ms, replicas=replicas, min_replicas=min_replicas,
                           max_replicas=max_replicas, num_cpus=num_cpus, num_gpus=num_gpus)
    serve_until_interrupted(options, host, port, address, say=lambda s: console.print(s))


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------

@app.command()
def bench(
    suite: str = typer.Option("decoder", help="decoder, generator, scaling or all."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32 (CPU and CUDA), bf16 or fp16 (CUDA)."),
    backend: list[str] = typer.Option(["torch"], help="Generator backends (repeatable): torch, torch-cudagraph, onnxruntime, tensorrt, aoti."),
    cuda_graph: bool | None = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="Generator CUDA graphs (default: per backend, see generate)."),
    preset: str | None = typer.Option(None, "--preset", "-p", help="NeRV preset to measure (default: L; --quick: tiny)."),
    res: list[int] | None = typer.Option(None, "--res", "-r", help="Resolutions, repeatable (default: 128 and 256; "
                                         "--quick: 128)."),
    scaling_frames: str = typer.Option("16,32,64,128", help="Frame counts of the scaling suite (comma-separated)."),
    repeats: int | None = typer.Option(None, help="Timed runs per case after warm-up (default: 5; --quick: 2)."),
    warmup: int | None = typer.Option(None, help="Untimed runs per case (default: 1)."),
    quick: bool = typer.Option(False, "--quick", help="CI size: tiny models, reduced-width SD-VAE, 4 frames, 2 runs; "
                               "written to a temporary folder (unless --out) and compared to no paper target."),
    sd_vae: Path | None = typer.Option(None, help="Local diffusers AutoencoderKL folder with real SD-VAE weights."),
    model: Path | None = typer.Option(None, help="Checkpoint for the generator suite (default: random-init preset)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder for results.json, results.md, scaling.png "
                                    "(default: bench/results/latest; --quick: a new temporary folder)."),
) -> None:
    """Measure the paper's efficiency table on this machine: SD-VAE vs NeRV decoder, full generation, scaling."""
    import tempfile

    require("torch", "onnx", "diffusers", "matplotlib", extra="bench")
    from .bench.report import write_results
    from .bench.suites import (
        BenchConfig,
        check_config,
        decoder_suite,
        generator_suite,
        machine_info,
        scaling_suite,
    )

    try:
        frames_list = tuple(int(f) for f in scaling_frames.split(","))
    except ValueError:
        _fail(f"--scaling-frames {scaling_frames!r}: expected comma-separated integers")
    kw = dict(suite=suite, device=device, precision=precision, backends=tuple(backend), cuda_graph=cuda_graph,
              sd_vae=str(sd_vae) if sd_vae else None, generator_source=str(model) if model else None)
    kw.update({k: v for k, v in (("repeats", repeats), ("warmup", warmup)) if v is not None})
    kw.update({k: v for k, v in (("preset", preset), ("resolutions", tuple(res or ()))) if v})  # what was given
    cfg = BenchConfig.quick_config(**kw) if quick else BenchConfig(scaling_frames=frames_list, **kw)
    check_config(cfg)
    if out is not None and out.exists() and not out.is_dir():
        _fail(f"--out {out} is a file; bench writes a folder (results.json, results.md, scaling.png)")
    results: dict = {}
    suites = {"decoder": decoder_suite, "generator": generator_suite, "scaling": scaling_suite}
    with console.status("bench") as status:
        for name, fn in suites.items():
            if suite in (name, "all"):
                results[name] = fn(cfg, lambda s: status.update(f"bench: {s}"))
    if out is None:  # made now: a run that fails leaves no empty folder behind
        out = Path(tempfile.mkdtemp(prefix="nerv-rt-bench-quick-")) if quick else Path("bench/results/latest")
    doc = write_results(out, cfg, machine_info(cfg), results)
    typer.echo((out / "results.md").read_text())
    console.print(f"results: {out}")
    for t in doc.get("targets", []):
        console.print(f"target {t['target']}: {t['value']:.2f} -> {'met' if t['met'] else 'MISSED'}")
