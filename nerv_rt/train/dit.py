"""Implicit-DiT training on weight tokens from a frozen NeRV-VAE.

Min-SNR-gamma weighted v- or eps-prediction (the config's dit.prediction), scheduled sampling (0 -> 0.5 over
the first 30% of steps), EMA, 10% class dropout for classifier-free guidance.

The tokens it learns to generate are the autodecoder bank of the VAE checkpoint when it holds one
(`train autodecode`), else the encoder's posteriors. The bank's tokens are fitted to their clips and
render their motion; the encoder's lose most of it, and a DiT trained on them generated near-stills
(docs/default-model.md, "Training for motion").
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import checkpoint as ckpt_io
from ..data.video_folder import VideoFolder
from ..diffusion.schedule import (
    NUM_TIMESTEPS,
    alphas_cumprod,
    linear_betas,
    min_snr_weights,
)
from ..diffusion.training import scheduled_sampling_inputs, scheduled_sampling_prob
from ..errors import NervError, option, warn
from ..models.dit import ImplicitDiT
from ..models.presets import PREDICTIONS
from ..models.refine import refine_tokens
from ..runtime.frames import frame_times
from .autodecode import bank_videos, check_bank_videos
from .common import (
    CsvLog,
    Dist,
    autocast,
    check_out_path,
    check_run_kind,
    clip_gradients,
    ema_update,
    lr_at,
    progress_bar,
    resume_state,
    setup,
    step_generator,
    stop_if_diverged,
    teardown,
    unwrap,
    wrap_ddp,
)
from .precision import check_precision, check_run_config


@dataclass
class DiTTrainConfig:
    steps: int = 4000
    batch: int = 64  # global batch of token sets, split evenly over DDP processes
    lr: float = 2e-4
    ema: float = 0.999  # the model samples with the EMA: after N steps it holds ema^N of the untrained start
    min_snr_gamma: float = 5.0
    class_dropout: float = 0.1
    scheduled_sampling: float = 0.5  # final probability of feeding the model its own estimate
    scheduled_ramp: float = 0.3  # ... reached after this fraction of the steps
    clips_per_video: int = 4  # token sets encoded per video (random clip positions; encoder tokens only)
    tokens: str = "auto"  # bank | encoder | refined | auto (the autodecoder bank when the VAE checkpoint holds one)
    prediction: str = "v"  # what the DiT's last layer predicts: v | eps (models/dit.py)
    ckpt_every: int = 500
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16: the steps' compute precision (common.autocast)

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_run_config(self)


@torch.no_grad()
def encode_dataset(vae, data: VideoFolder, clips_per_video: int, seed: int, device: torch.device,
                   bar=None, refine_steps: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Posterior (mean, std) of `clips_per_video` random clips of every video, and their labels. With
    `refine_steps`, the means are the default encoding's tokens instead (encoder + refinement, std 0)."""
    g = torch.Generator().manual_seed(seed)
    means, stds, labels = [], [], []
    task = bar.add_task("encode clips", total=len(data) * clips_per_video, status="") if bar else None
    frame_t = torch.from_numpy(frame_times(data.frames)).to(device)
    for i in range(len(data)):
        for s in torch.rand(clips_per_video, generator=g):
            video, label = data.batch([i], [float(s)])
            mean, logvar = vae.encoder(video.to(device))
            std = (0.5 * logvar).exp()
            if refine_steps:
                mean = refine_tokens(vae.decoder, mean, frame_t, video.to(device), refine_steps)
                std = torch.zeros_like(mean)
            means.append(mean[0].cpu())
            stds.append(std[0].cpu())
            labels.append(int(label[0]))
            if bar:
                bar.update(task, advance=1)
    return torch.stack(means), torch.stack(stds), torch.tensor(labels)


TOKEN_SOURCES = ("auto", "bank", "encoder", "refined")


def training_tokens(vae, base: ckpt_io.Checkpoint, data: VideoFolder, cfg: DiTTrainConfig, device: torch.device,
                    bar=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(means, stds, labels) of the token sets the DiT learns: the autodecoder bank (one deterministic set
    per video, std 0) or the encoder's posteriors of `clips_per_video` clips per video."""
    bank = base.train_state.get("bank") if base.train_state.get("kind") == "autodecode" else None
    source = cfg.tokens if cfg.tokens != "auto" else ("bank" if bank is not None else "encoder")
    if source in ("encoder", "refined"):
        steps = base.config.refine_steps if source == "refined" else 0
        if source == "refined" and steps == 0:
            raise NervError(f"--tokens refined: {base.source} has no default refinement (refine_steps 0)")
        return encode_dataset(vae, data, cfg.clips_per_video, cfg.seed, device, bar, steps)
    if bank is None:
        raise NervError(f"--tokens bank: {base.source} holds no autodecoder bank (make it with `train autodecode`)")
    if bank.shape[0] != len(data):
        raise NervError(f"--tokens bank: {base.source} holds tokens for {bank.shape[0]} videos but {data.root} has "
                        f"{len(data)}; use the folder it was trained on")
    check_bank_videos(base.train_state, bank_videos(data), data.root)  # row i is video i: labels come from the folder
    means = bank.float().view(len(data), base.config.tokens, base.config.token_dim)
    return means, torch.zeros_like(means), torch.tensor(data.labels)


def check_resumable(state: ckpt_io.Checkpoint, base: ckpt_io.Checkpoint, out: Path) -> None:
    """`--resume` continues a DiT run on the VAE it was trained on, with the same classes."""
    check_run_kind(state.train_state, out, "dit")
    if state.dit is None:
        raise NervError(f"--resume: {out} holds no DiT weights; give the DiT run's checkpoint as --out")
    if state.config.num_classes != base.config.num_classes:
        raise NervError(f"--resume: {out} was trained on {state.config.num_classes} classes and the data has "
                        f"{base.config.num_classes}; resume it on its own data folder")
    if state.vae.keys() != base.vae.keys() or not all(torch.equal(state.vae[k], v) for k, v in base.vae.items()):
        raise NervError(f"--resume: {out} was trained on another VAE than --vae {base.source}; resume it with the VAE "
                        "it was trained on")


def token_std(means: torch.Tensor, stds: torch.Tensor) -> torch.Tensor:
    """Per-dimension std of posterior samples: sqrt(Var[mean] + E[std^2]) over clips and tokens.  -> (d_z,)"""
    var = means.flatten(0, 1).var(dim=0) + stds.flatten(0, 1).pow(2).mean(dim=0)
    return var.sqrt().float()


def train_dit(data_dir: Path, vae_path: Path, out: Path, cfg: DiTTrainConfig, device: str = "auto",
              resume: bool = False, log: Path | None = None, show_progress: bool = True) -> ckpt_io.Checkpoint:
    if cfg.tokens not in TOKEN_SOURCES:
        raise NervError(f"unknown {option('tokens')} {cfg.tokens!r}; choose from {', '.join(TOKEN_SOURCES)}")
    if cfg.prediction not in PREDICTIONS:
        raise NervError(f"unknown {option('prediction')} {cfg.prediction!r}; choose from {', '.join(PREDICTIONS)}")
    d = setup(device, cfg.batch)
    try:
        if d.main:
            check_out_path(out, resume)
        base = ckpt_io.load(vae_path)
        data = VideoFolder(data_dir, base.config.frames, base.config.res)
        if data.num_classes != base.config.num_classes:
            raise NervError(f"{data_dir} has {data.num_classes} classes but the VAE was trained with "
                            f"{base.config.num_classes}")
        if d.main and cfg.ema ** cfg.steps > 0.05:  # once the inputs are known good: an error stays one line
            warn(f"{option('ema')} {cfg.ema:g} over {cfg.steps} steps: the EMA weights the model samples "
                 f"with keep {cfg.ema ** cfg.steps:.0%} of the untrained start; use a smaller "
                 f"{option('ema')} or more steps")
        base = replace(base, config=replace(base.config, class_names=tuple(data.classes),
                                            dit=replace(base.config.dit, prediction=cfg.prediction)))
        return _train(data, base, out, cfg, d, resume, log, show_progress)
    finally:
        teardown()


def _train(data: VideoFolder, base: ckpt_io.Checkpoint, out: Path, cfg: DiTTrainConfig, d: Dist, resume: bool,
           log: Path | None, show_progress: bool) -> ckpt_io.Checkpoint:
    model_cfg = base.config
    vae, _ = ckpt_io.build_models(replace(base, dit=None, ema=None), d.device)
    torch.manual_seed(cfg.seed)
    dit = ImplicitDiT(model_cfg).to(d.device)
    ema = copy.deepcopy(dit).requires_grad_(False)
    opt = torch.optim.AdamW(dit.parameters(), lr=cfg.lr, weight_decay=0.0)
    start = 0
    if resume:
        state = ckpt_io.load(out)
        check_resumable(state, base, out)
        if state.config.dit.prediction != model_cfg.dit.prediction:
            raise NervError(f"--resume: {out} is a {state.config.dit.prediction}-prediction run; "
                            f"resume it with --prediction {state.config.dit.prediction}")
        dit.load_state_dict(state.dit)
        ema.load_state_dict(state.ema)
        ts = resume_state(state.train_state, out, "dit", ("step", "optim"), cfg)
        opt.load_state_dict(ts["optim"])
        start = int(ts["step"])
    abar_table = alphas_cumprod(linear_betas())
    abar = torch.from_numpy(abar_table).float().to(d.device)
    snr_w = torch.from_numpy(min_snr_weights(abar_table, cfg.min_snr_gamma, model_cfg.dit.prediction)).float().to(d.device)
    dit_ddp = wrap_ddp(dit, d)
    csv_log = CsvLog(log if d.main else None, ["loss", "ss_prob", "lr"], start)

    with progress_bar(d.main and show_progress) as bar:
        means, stds, labels = training_tokens(vae, base, data, cfg, d.device, bar)
        tstd = token_std(means, stds)
        means, stds = (means / tstd).to(d.device), (stds / tstd).to(d.device)  # normalized token space

        def save(step: int) -> ckpt_io.Checkpoint:
            cpu = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}  # noqa: E731
            ck = ckpt_io.Checkpoint(config=model_cfg, vae=base.vae, dit=cpu(dit), ema=cpu(ema), token_std=tstd,
                                    train_state={"kind": "dit", "step": step, "optim": opt.state_dict(),
                                                 "train_config": asdict(cfg)})
            if d.main:
                ckpt_io.save(ck, out)
            return ck

        ck = None
        task = bar.add_task("train dit", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            g = step_generator(cfg.seed, step)
            idx = torch.randint(len(means), (cfg.batch,), generator=g)
            z_noise = torch.randn(cfg.batch, model_cfg.tokens, model_cfg.token_dim, generator=g)
            t = torch.randint(NUM_TIMESTEPS, (cfg.batch,), generator=g)
            noise = torch.randn(cfg.batch, model_cfg.tokens, model_cfg.token_dim, generator=g)
            drop = torch.rand(cfg.batch, generator=g) < cfg.class_dropout
            p_own = scheduled_sampling_prob(step, cfg.steps, cfg.scheduled_sampling, cfg.scheduled_ramp)
            own = torch.rand(cfg.batch, generator=g) < p_own
            idx, z_noise, t, noise, drop, own = (d.shard(x).to(d.device) for x in (idx, z_noise, t, noise, drop, own))
            x0 = means[idx] + stds[idx] * z_noise  # a posterior sample, normalized
            y = torch.where(drop, torch.full_like(labels[idx.cpu()], model_cfg.num_classes),
                            labels[idx.cpu()]).to(d.device)
            lr = lr_at(step, cfg.steps, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(d.device, cfg.precision):
                x_t, target = scheduled_sampling_inputs(unwrap(dit_ddp), x0, t, noise, y, abar, own)
                eps = dit_ddp(x_t, t.float(), y)
                per_sample = (eps.float() - target).pow(2).flatten(1).mean(1)
                loss = (snr_w[t] * per_sample).mean()
            stop_if_diverged(loss, step, "train dit", out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(dit.parameters(), step, "train dit", out)
            opt.step()
            ema_update(ema, dit, cfg.ema)
            if d.main:
                csv_log.write(step + 1, {"loss": loss.item(), "ss_prob": p_own, "lr": lr})
            bar.update(task, advance=1, status=f"loss {loss.item():.4f}")
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
                ck = save(step + 1)
    return ck if ck is not None else ckpt_io.load(out)
