"""`nerv-rt` command line: thin typer commands over the Python API.

Every user-fixable problem is a NervError; the group below prints it as one line on stderr and
exits with code 2 (no traceback).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from .errors import EXTRA_OF, NervError, missing_extra
from .models.presets import PRESETS


class _Group(typer.core.TyperGroup):
    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except NervError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except ModuleNotFoundError as e:  # an optional extra this command needs
            if (e.name or "").split(".")[0] not in EXTRA_OF:
                raise
            typer.echo(f"error: {missing_extra(e.name)}", err=True)
            raise typer.Exit(2) from None


def _typer(help: str) -> typer.Typer:
    return typer.Typer(cls=_Group, help=help, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})


app = _typer("nerv-rt: train, export, compile and run NeRV-Diffusion video generation.")
console = Console(stderr=True, soft_wrap=True)


def _fail(msg: str) -> None:
    raise NervError(msg)


# --------------------------------------------------------------------------------------------
# info
# --------------------------------------------------------------------------------------------

@app.command()
def info(
    path: str | None = typer.Argument(None, help="'default', a checkpoint (.pt or folder) or an export folder to describe."),
    preset: str = typer.Option("L", "--preset", "-p", help=f"Preset to describe when no PATH: {', '.join(PRESETS)}."),
    res: int | None = typer.Option(None, "--res", "-r", help="Resolution (preset: 128 or 256, default 128; PATH: one it holds)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Tokens, parameters per module and MACs (decoder per 16-frame video, DiT per forward)."""
    from .models.presets import preset as make_preset
    from .models.stats import describe

    if path is not None:
        cfg = _model_config(path, res)
    else:
        try:
            cfg = make_preset(preset, res or 128)
        except ValueError as e:
            _fail(str(e))
    d = describe(cfg)
    if as_json:
        typer.echo(json.dumps(d))
        return
    table = Table(title=f"{d['preset']} @ {d['res']}^2")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("tokens x dim", f"{d['tokens']} x {d['token_dim']}")
    for k, v in d["params"].items():
        table.add_row(f"params {k}", f"{v / 1e6:.2f} M")
    table.add_row("decoder MACs / 16-frame video", f"{d['macs']['decoder_16f'] / 1e9:.1f} G")
    table.add_row("DiT MACs / forward (batch 1)", f"{d['macs']['dit_step'] / 1e9:.2f} G")
    Console().print(table)


def _model_config(source: str, res: int | None):
    """The config of one model of `source`; --res picks among several resolutions."""
    from .runtime.sources import resolve

    models = {m.config.res: m.config for m in resolve(source)}
    if res is None and len(models) == 1:
        return next(iter(models.values()))
    if res not in models:
        _fail(f"{source} holds resolutions {', '.join(map(str, sorted(models)))}; pick one with --res")
    return models[res]


# --------------------------------------------------------------------------------------------
# export / build
# --------------------------------------------------------------------------------------------

@app.command()
def export(
    ckpt: str = typer.Argument(..., help="Checkpoint .pt, save_pretrained folder, or 'default' (the embedded model)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: engines/<name>/)."),
    opset: int = typer.Option(18, help="ONNX opset (TensorRT 10 parses 9-20)."),
    max_frames: int = typer.Option(64, help="Most frames per decoder call (TensorRT profile; longer videos are chunked)."),
    max_batch: int = typer.Option(4, help="Most videos per DiT call (the DiT profile goes to 2x for CFG)."),
    trt: bool = typer.Option(False, "--trt", help="Also build TensorRT engines (needs a CUDA GPU and tensorrt)."),
    precision: str = typer.Option("fp16", help="Engine precision with --trt: fp32, fp16 or bf16."),
) -> None:
    """Export a checkpoint to ONNX (dit, decoder, encoder) with a manifest; every graph is validated
    against PyTorch on ONNX Runtime and checked against TensorRT's operator list."""
    from .export.onnx_export import export as run_export

    if trt:
        from .export.trt_build import import_tensorrt

        import_tensorrt()  # fail before exporting, not after
    with console.status("exporting") as status:
        folder = run_export(ckpt, out, opset, max_frames, max_batch, step=lambda s: status.update(f"exporting {s}"))
    _print_export_summary(folder)
    if trt:
        build(folder, precision=precision, max_batch=None, max_frames=None, workspace=4.0)
    typer.echo(str(folder))


def _print_export_summary(folder: Path) -> None:
    from .runtime.sources import resolve

    for m in resolve(folder):
        for name, g in m.manifest["graphs"].items():
            v = g["validation"]
            psnr = f", {v['psnr_db']:.1f} dB" if "psnr_db" in v else ""
            trt_ops = "all TensorRT-supported" if not v["trt_unsupported_ops"] else f"NOT in TensorRT: {v['trt_unsupported_ops']}"
            console.print(f"{m.config.res}/{name}.onnx: max |ORT - torch| {v['max_abs_err']:.2e}{psnr}; ops {trt_ops}")


@app.command()
def build(
    folder: Path = typer.Argument(..., help="Export folder (from `nerv-rt export`)."),
    precision: str = typer.Option("fp16", help="fp32, fp16 or bf16."),
    max_batch: int | None = typer.Option(None, help="Most videos per DiT call (default: the export's)."),
    max_frames: int | None = typer.Option(None, help="Most frames per decoder call (default: the export's)."),
    workspace: float = typer.Option(4.0, help="Builder workspace limit in GB."),
) -> None:
    """Build TensorRT engines from an export folder. An engine is reused while its key (ONNX sha256,
    precision, profiles, TensorRT version, GPU and compute capability) is unchanged."""
    from .export.trt_build import build_engines
    from .runtime.sources import resolve

    for m in resolve(folder):
        if m.kind != "export":
            _fail(f"{m.path}: not an export folder; run `nerv-rt export` first")
        build_engines(m.path, m.manifest, precision, max_batch, max_frames, workspace, step=lambda s: console.print(s))


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------

@app.command()
def generate(
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    frames: int = typer.Option(16, "--frames", "-f", help="Frames per video (1-4096); more than the training clip interpolates."),
    res: int | None = typer.Option(None, "--res", "-r", help="Resolution, one the model has (default: its smallest)."),
    n: int = typer.Option(1, "--n", help="Number of videos."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same video on every backend."),
    steps: int = typer.Option(50, help="Sampler steps (the paper's protocol: --sampler ddpm --steps 250)."),
    sampler: str = typer.Option("ddim", help="ddim or ddpm."),
    guidance: float = typer.Option(2.0, help="Classifier-free guidance scale (1 = off)."),
    class_label: str | None = typer.Option(None, "--class", help="Class index or name, e.g. pan_left (default: random per video)."),
    backend: str = typer.Option("auto", help="auto, torch, torch-cudagraph, onnxruntime or tensorrt."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    cuda_graph: bool | None = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="CUDA graphs (default: whole loop on torch-cudagraph and tensorrt; off on onnxruntime)."),
    chunk: int = typer.Option(16, help="Frames per decoder call: memory stays flat as --frames grows."),
    fps: int = typer.Option(8, help="Frames per second of the written video."),
    out: Path = typer.Option(Path("clip.mp4"), "--out", "-o", help="Output: .mp4, .gif, or a folder (PNG frames)."),
) -> None:
    """Generate videos: the DiT samples weight tokens, the NeRV decoder renders the frames."""
    from .runtime.pipeline import Pipeline
    from .runtime.video_io import check_output_path

    check_output_path(out)  # before any work: a bad path must not cost a sampling run
    Pipeline.check_frames(frames)
    pipe = Pipeline.load(model, backend=backend, device=device, cuda_graph=cuda_graph)
    with _progress() as bar:
        task = bar.add_task(f"sampling ({pipe.backend_name}, {pipe.device})", total=steps)
        t0 = time.perf_counter()
        tokens = pipe.sample_tokens(res, n, class_label, steps, sampler, guidance, 0.0, seed,
                                    progress=lambda i: bar.update(task, completed=i))
        pipe.synchronize()
        t1 = time.perf_counter()
    timings: dict = {}
    paths = pipe.render(tokens, out, frames, res, chunk, fps, timings)  # chunk by chunk into the file(s)
    for p in paths:
        typer.echo(str(p))
    console.print(f"sample {t1 - t0:.2f} s | decode {timings['decode_s']:.2f} s | write {timings['write_s']:.2f} s "
                  f"({n} x {frames} frames at {pipe.model(res).config.res}^2, {pipe.backend_name} on {pipe.device})")


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=True)


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
    seed: int = typer.Option(0, help="Seed; clip i depends only on (seed, i)."),
    res: int = typer.Option(128, "--res", "-r", help="Frame size."),
    frames: int = typer.Option(16, "--frames", "-f", help="Frames per clip."),
) -> None:
    """Write the synthetic set: pans / zooms over scikit-image's photos and moving shapes, as .mp4."""
    from .data.synthetic import MOTIONS, write_synthetic

    if n < 1 or res < 16 or res % 2 or frames < 1:
        _fail("--n and --frames must be >= 1 and --res an even number >= 16")
    with _progress() as bar:
        task = bar.add_task("writing clips", total=n)
        write_synthetic(out, n, seed, res, frames, progress=lambda: bar.advance(task))
    typer.echo(f"{out} ({n} clips, {len(MOTIONS)} classes)")


def _train_common(out: Path, device: str):
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
    steps: int = typer.Option(2000, help="Optimizer steps."),
    batch: int = typer.Option(8, help="Global batch of clips (split over DDP processes)."),
    frames_per_step: int = typer.Option(4, help="Frames of each clip the decoder is supervised on per step."),
    lr: float = typer.Option(3e-4, help="Peak learning rate (warm-up, then cosine to 10%)."),
    gan_start: float = typer.Option(0.6, help="Fraction of steps before the GAN loss starts."),
    gan_weight: float = typer.Option(0.05, help="Weight of the hinge GAN loss (0 disables the discriminator)."),
    temporal_weight: float = typer.Option(1.0, help="Weight of the L2 on frame-to-frame changes (motion)."),
    kl_weight: float = typer.Option(1e-6, help="Weight of the KL term (summed over tokens)."),
    perceptual_weight: float = typer.Option(0.1, help="Weight of the perceptual term (LPIPS or its substitute)."),
    lpips: Path | None = typer.Option(None, help="Local TorchScript LPIPS file; default: the weight-free substitute."),
    init: Path | None = typer.Option(None, help="Start from another VAE checkpoint's matching weights (e.g. 128 -> 256)."),
    ckpt_every: int = typer.Option(250, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, help="Seed of weights and data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train NeRV-VAE: L2 + perceptual + hinge GAN (after a warm-up) + KL. Writes OUT and OUT.csv."""
    from .models.presets import preset as make_preset
    from .train.vae import VAETrainConfig, train_vae

    _train_common(out, device)
    try:
        cfg = make_preset(preset, res)
    except ValueError as e:
        _fail(str(e))
    tcfg = VAETrainConfig(steps=steps, batch=batch, frames_per_step=frames_per_step, lr=lr, gan_start=gan_start,
                          gan_weight=gan_weight, kl_weight=kl_weight, perceptual_weight=perceptual_weight,
                          temporal_weight=temporal_weight,
                          ckpt_every=ckpt_every, seed=seed, lpips=str(lpips) if lpips else None)
    t0 = time.perf_counter()
    train_vae(data, out, cfg, tcfg, device, resume, init, out.with_suffix(".csv"))
    typer.echo(f"{out} ({time.perf_counter() - t0:.0f} s)")


@train_app.command("dit")
def train_dit_cmd(
    data: Path = typer.Argument(..., help="The videos the VAE was trained on (or others with the same classes)."),
    vae: Path = typer.Option(..., "--vae", help="VAE checkpoint from `nerv-rt train vae`."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt): VAE + DiT + EMA + token std."),
    steps: int = typer.Option(4000, help="Optimizer steps."),
    batch: int = typer.Option(64, help="Global batch of token sets."),
    lr: float = typer.Option(2e-4, help="Peak learning rate."),
    ema: float = typer.Option(0.9999, help="EMA decay of the DiT weights."),
    tokens: str = typer.Option("auto", help="What to learn to generate: bank (the autodecoder's per-video tokens), "
                               "encoder (posteriors of clips), or auto (bank when --vae holds one)."),
    clips_per_video: int = typer.Option(4, help="Token sets encoded per video (random clip positions; encoder tokens)."),
    ckpt_every: int = typer.Option(500, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Train the implicit DiT on tokens of the frozen VAE (Min-SNR-5, scheduled sampling, EMA, CFG dropout)."""
    from .train.dit import DiTTrainConfig, train_dit

    _train_common(out, device)
    tcfg = DiTTrainConfig(steps=steps, batch=batch, lr=lr, ema=ema, clips_per_video=clips_per_video, tokens=tokens,
                          ckpt_every=ckpt_every, seed=seed)
    t0 = time.perf_counter()
    train_dit(data, vae, out, tcfg, device, resume, out.with_suffix(".csv"))
    typer.echo(f"{out} ({time.perf_counter() - t0:.0f} s)")


@train_app.command("autodecode")
def train_autodecode_cmd(
    data: Path = typer.Argument(..., help="The videos the VAE was trained on: one token set per video (its first clip)."),
    init: Path = typer.Option(..., "--init", help="Checkpoint to fine-tune: a VAE, or VAE + DiT (carried over)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt), saved every --ckpt-every steps."),
    steps: int = typer.Option(4000, help="Optimizer steps."),
    batch: int = typer.Option(8, help="Videos per step."),
    frames_per_step: int = typer.Option(4, help="Frames of each clip rendered per step."),
    lr: float = typer.Option(5e-4, help="Decoder peak learning rate (warm-up, then cosine to 10%)."),
    token_lr: float = typer.Option(1e-2, help="Learning rate of the per-video tokens (sparse Adam)."),
    temporal_weight: float = typer.Option(1.0, help="Weight of the L2 on frame-to-frame changes (motion)."),
    encoder_weight: float = typer.Option(0.1, help="Encoder's L2 onto the bank's tokens (it also renders through "
                                         "the decoder); 0 keeps the encoder frozen."),
    encoder_lr: float = typer.Option(2e-4, help="Encoder peak learning rate."),
    refine_steps: int = typer.Option(40, min=0, help="Token refinement steps stored as the output's default encoding."),
    ckpt_every: int = typer.Option(250, help="Write the checkpoint every this many steps."),
    resume: bool = typer.Option(False, help="Continue the run saved at --out."),
    seed: int = typer.Option(0, help="Seed of the data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Fine-tune the VAE with free per-video tokens (autodecoder): the decoder and a token bank on L2 + the
    temporal term, the encoder regressing the bank. Then train the DiT on the bank (`train dit`). The output
    encodes new clips with --refine-steps token refinement steps by default."""
    from .train.autodecode import AutodecodeConfig, train_autodecode

    _train_common(out, device)
    tcfg = AutodecodeConfig(steps=steps, batch=batch, frames_per_step=frames_per_step, lr=lr, token_lr=token_lr,
                            temporal_weight=temporal_weight, encoder_weight=encoder_weight, encoder_lr=encoder_lr,
                            ckpt_every=ckpt_every, seed=seed, refine_steps=refine_steps)
    t0 = time.perf_counter()
    train_autodecode(data, init, out, tcfg, device, resume, out.with_suffix(".csv"))
    typer.echo(f"{out} ({time.perf_counter() - t0:.0f} s)")


# --------------------------------------------------------------------------------------------
# reconstruct / eval
# --------------------------------------------------------------------------------------------

eval_app = _typer("Evaluate models.")
app.add_typer(eval_app, name="eval")
REFINE_HELP = ("Adam steps on each clip's weight tokens after the encoder (semi-amortized encoding; torch "
               "backends). Default: the model's own (its config's refine_steps; 0 on onnxruntime / tensorrt).")


@app.command()
def reconstruct(
    video: Path = typer.Argument(..., help="Input video file."),
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    res: int | None = typer.Option(None, "--res", "-r", help="Model resolution (default: the smallest)."),
    out: Path = typer.Option(Path("side_by_side.mp4"), "--out", "-o", help="Output (.mp4, .gif or folder)."),
    backend: str = typer.Option("auto", help="auto, torch, onnxruntime, ..."),
    fps: int = typer.Option(8, help="Frames per second of the output."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=0, help=REFINE_HELP),
) -> None:
    """Encode the first clip of VIDEO to weight tokens and render it back, input | reconstruction."""
    import numpy as np

    from .evaluate import reconstruct_clip
    from .runtime.pipeline import Pipeline
    from .runtime.video_io import check_output_path, save_video

    check_output_path(out)
    pipe = Pipeline.load(model, backend=backend)
    clip, recon = reconstruct_clip(pipe, video, res, refine_steps)
    save_video(np.concatenate([clip, recon], axis=2), out, fps=fps)
    from .evaluate import clip_metrics

    psnr, ssim = clip_metrics(clip, recon)
    typer.echo(str(out))
    console.print(f"PSNR {psnr:.2f} dB | SSIM {ssim:.4f}")


@eval_app.command("recon")
def eval_recon(
    data: Path = typer.Argument(..., help="Folder of videos."),
    model: str = typer.Option("default", "--model", "-m", help="'default', a checkpoint, or an export folder."),
    res: int | None = typer.Option(None, "--res", "-r", help="Model resolution (default: the smallest)."),
    backend: str = typer.Option("auto", help="auto, torch, onnxruntime, ..."),
    limit: int | None = typer.Option(None, help="Evaluate at most this many clips."),
    i3d: Path | None = typer.Option(None, help="Local TorchScript I3D file: also report reconstruction FVD."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    refine_steps: int | None = typer.Option(None, "--refine-steps", min=0, help=REFINE_HELP),
) -> None:
    """Mean PSNR / SSIM of reconstructions over the first clip of every video (FVD with --i3d)."""
    from .evaluate import evaluate_reconstruction
    from .runtime.pipeline import Pipeline

    pipe = Pipeline.load(model, backend=backend)
    with _progress() as bar:
        task = bar.add_task("reconstructing", total=None)
        result = evaluate_reconstruction(pipe, data, res, limit, i3d, refine_steps, progress=lambda k, total: bar.update(task, completed=k, total=total))
    if as_json:
        typer.echo(json.dumps(result))
    else:
        fvd = f" | FVD {result['fvd']:.1f}" if "fvd" in result else ""
        typer.echo(f"PSNR {result['psnr']:.2f} dB | SSIM {result['ssim']:.4f}{fvd} over {result['clips']} clips, "
                   f"{result['refine_steps']} refinement steps")


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------

@app.command()
def bench(
    suite: str = typer.Option("decoder", help="decoder, generator, scaling or all."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    precision: str = typer.Option("fp32", help="fp32 (CPU and CUDA), bf16 or fp16 (CUDA)."),
    backend: list[str] = typer.Option(["torch"], help="Generator backends (repeatable): torch, torch-cudagraph, onnxruntime, tensorrt."),
    cuda_graph: bool | None = typer.Option(None, "--cuda-graph/--no-cuda-graph", help="Generator CUDA graphs (default: per backend, see generate)."),
    preset: str = typer.Option("L", "--preset", "-p", help="NeRV preset to measure."),
    res: list[int] = typer.Option([128, 256], "--res", "-r", help="Resolutions (repeatable)."),
    scaling_frames: str = typer.Option("16,32,64,128", help="Frame counts of the scaling suite (comma-separated)."),
    repeats: int | None = typer.Option(None, help="Timed runs per case after warm-up (default: 5; --quick: 2)."),
    warmup: int | None = typer.Option(None, help="Untimed runs per case (default: 1)."),
    quick: bool = typer.Option(False, "--quick", help="CI size: tiny models, reduced-width SD-VAE, 4 frames, 2 runs."),
    sd_vae: Path | None = typer.Option(None, help="Local diffusers AutoencoderKL folder with real SD-VAE weights."),
    model: Path | None = typer.Option(None, help="Checkpoint for the generator suite (default: random-init preset)."),
    out: Path = typer.Option(Path("bench/results/latest"), "--out", "-o", help="Folder for results.json, results.md, scaling.png."),
) -> None:
    """Measure the paper's efficiency table on this machine: SD-VAE vs NeRV decoder, full generation, scaling."""
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
    cfg = BenchConfig.quick_config(**kw) if quick else BenchConfig(preset=preset, resolutions=tuple(res),
                                                                   scaling_frames=frames_list, **kw)
    check_config(cfg)
    results: dict = {}
    suites = {"decoder": decoder_suite, "generator": generator_suite, "scaling": scaling_suite}
    with console.status("bench") as status:
        for name, fn in suites.items():
            if suite in (name, "all"):
                results[name] = fn(cfg, lambda s: status.update(f"bench: {s}"))
    doc = write_results(out, cfg, machine_info(cfg), results)
    typer.echo((out / "results.md").read_text())
    for t in doc.get("targets", []):
        console.print(f"target {t['target']}: {t['value']:.2f} -> {'met' if t['met'] else 'MISSED'}")
