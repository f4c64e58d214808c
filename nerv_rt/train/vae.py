"""NeRV-VAE training: L2 + perceptual + hinge GAN (after a warm-up) + KL."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import checkpoint as ckpt_io
from ..data.video_folder import VideoFolder
from ..errors import NervError
from ..models.hyper_ae import NeRVVAE, kl_divergence
from ..models.presets import ModelConfig
from ..runtime.frames import frame_times
from .common import (
    CsvLog,
    Dist,
    autocast,
    check_out_path,
    check_run_kind,
    clip_gradients,
    lr_at,
    progress_bar,
    resume_state,
    setup,
    step_generator,
    stop_if_diverged,
    teardown,
    wrap_ddp,
)
from .losses import (
    PatchDiscriminator,
    check_frames_per_clip,
    check_frames_per_step,
    hinge_d_loss,
    hinge_g_loss,
    perceptual_loss,
    reconstruction_loss,
)
from .precision import check_precision, check_run_config


@dataclass
class VAETrainConfig:
    steps: int = 2000
    batch: int = 8  # global batch of clips, split evenly over DDP processes
    frames_per_step: int = 4  # the decoder is time-queried: supervise a random subset of each clip's frames
    lr: float = 3e-4
    temporal_weight: float = 1.0  # L2 on frame-to-frame changes (losses.temporal_l2): motion, not just stills
    kl_weight: float = 1e-6  # on the KL summed over tokens (the L2 term is a per-pixel mean)
    perceptual_weight: float = 0.1  # measured: 0.5 slowed the L2 (PSNR) convergence of the tiny model
    gan_weight: float = 0.05
    gan_start: float = 0.6  # fraction of steps before the discriminator joins (warm-up)
    ckpt_every: int = 250
    seed: int = 0
    lpips: str | None = None  # local TorchScript LPIPS file; None = weight-free substitute
    precision: str = "auto"  # auto | fp32 | bf16: the steps' compute precision (common.autocast)

    def __post_init__(self) -> None:
        check_frames_per_step(self.frames_per_step)
        check_precision(self.precision)
        check_run_config(self)


@torch.no_grad()
def init_from(model: NeRVVAE, path: Path) -> int:
    """Warm-start from another VAE checkpoint of the same preset (e.g. 128^2 -> 256^2): every tensor of the same
    name gets the overlapping block of the other's values (all of it when the shapes match; the first 32 of 40
    tokens' weights for the token-mixing heads and queries). Another preset's weights have other widths, and
    a block of them is no warm start: refused. Returns how many tensors were copied."""
    saved = ckpt_io.load(path)
    if saved.config.preset != model.cfg.preset:
        raise NervError(f"--init {path} is a {saved.config.preset} model and this run trains {model.cfg.preset}; "
                        f"warm-start from a model of the same preset (--preset {saved.config.preset})")
    own = model.state_dict()
    copied = 0
    for k, v in saved.vae.items():
        if k in own and own[k].ndim == v.ndim:
            block = tuple(slice(0, min(a, b)) for a, b in zip(own[k].shape, v.shape))
            own[k][block] = v[block]
            copied += 1
    return copied


def check_same_model(saved: ModelConfig, asked: ModelConfig, out: Path) -> None:
    """`--resume` goes on training the saved model: other preset, resolution or shape flags are refused in one line."""
    differ = [k for k in ("preset", "res", "frames", "tokens", "token_dim", "encoder", "decoder")
              if getattr(saved, k) != getattr(asked, k)]
    if differ and (saved.preset, saved.res) == (asked.preset, asked.res):
        raise NervError(f"--resume: {out} has another {', '.join(differ)} than this nerv-rt's {saved.preset} preset at "
                        f"{saved.res}^2 (saved by another version); start a new run from it with --init")
    if differ:
        raise NervError(f"--resume: {out} is a {saved.preset} model at {saved.res}^2 and these flags ask for "
                        f"{asked.preset} at {asked.res}^2; resume it with --preset {saved.preset} --res {saved.res}")


def train_vae(data_dir: Path, out: Path, model_cfg: ModelConfig, cfg: VAETrainConfig, device: str = "auto",
              resume: bool = False, init: Path | None = None, log: Path | None = None,
              show_progress: bool = True) -> ckpt_io.Checkpoint:
    d = setup(device, cfg.batch)
    try:
        if d.main:
            check_out_path(out, resume)
        data = VideoFolder(data_dir, model_cfg.frames, model_cfg.res)
        model_cfg = replace(model_cfg, num_classes=data.num_classes, class_names=tuple(data.classes), fps=data.fps)
        return _train(data, out, model_cfg, cfg, d, resume, init, log, show_progress)
    finally:
        teardown()


def _train(data: VideoFolder, out: Path, model_cfg: ModelConfig, cfg: VAETrainConfig, d: Dist, resume: bool,
           init: Path | None, log: Path | None, show_progress: bool) -> ckpt_io.Checkpoint:
    state = ckpt_io.load(out) if resume else None
    check_frames_per_clip(cfg.frames_per_step, model_cfg.frames)
    if state is not None:
        check_run_kind(state.train_state, out, "vae")
        check_same_model(state.config, model_cfg, out)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    vae, disc = NeRVVAE(model_cfg).to(d.device), PatchDiscriminator().to(d.device)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    start = 0
    if state is not None:
        vae.load_state_dict(state.vae)
        ts = resume_state(state.train_state, out, "vae", ("step", "disc", "optim", "disc_optim"), cfg)
        disc.load_state_dict(ts["disc"])
        opt.load_state_dict(ts["optim"])
        disc_opt.load_state_dict(ts["disc_optim"])
        start = int(ts["step"])
    elif init is not None:
        init_from(vae, init)
    perceptual = perceptual_loss(cfg.lpips).to(d.device)
    vae_ddp, disc_ddp = wrap_ddp(vae, d), wrap_ddp(disc, d)
    times = torch.from_numpy(frame_times(model_cfg.frames)).to(d.device)
    gan_start = int(cfg.gan_start * cfg.steps)
    csv_log = CsvLog(log if d.main else None, ["loss", "l2", "perceptual", "kl", "g_loss", "d_loss", "lr"], start)

    def save(step: int) -> ckpt_io.Checkpoint:
        ck = ckpt_io.Checkpoint(config=model_cfg, vae={k: v.detach().cpu() for k, v in vae.state_dict().items()},
                                train_state={"kind": "vae", "step": step, "optim": opt.state_dict(),
                                             "disc": disc.state_dict(), "disc_optim": disc_opt.state_dict(),
                                             "train_config": asdict(cfg)})
        if d.main:
            ckpt_io.save(ck, out)
        return ck

    ck = None
    with progress_bar(d.main and show_progress) as bar:
        task = bar.add_task("train vae", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            g = step_generator(cfg.seed, step)
            idx = torch.randint(len(data), (cfg.batch,), generator=g)
            starts = torch.rand(cfg.batch, generator=g)
            frame_idx = torch.randperm(model_cfg.frames, generator=g)[:cfg.frames_per_step].sort().values
            noise = torch.randn(cfg.batch, model_cfg.tokens, model_cfg.token_dim, generator=g)
            videos, _ = data.batch(d.shard(idx), d.shard(starts))
            videos, noise = videos.to(d.device), d.shard(noise).to(d.device)
            target = videos[:, frame_idx.to(d.device)]  # (b, K, 3, H, W)
            lr = lr_at(step, cfg.steps, cfg.lr)
            for group in (*opt.param_groups, *disc_opt.param_groups):
                group["lr"] = lr
            use_gan = step >= gan_start and cfg.gan_weight > 0

            with autocast(d.device, cfg.precision):
                recon, mean, logvar = vae_ddp(videos, times[frame_idx.to(d.device)], noise)
                fake, real = recon.flatten(0, 1), target.flatten(0, 1)
                loss, l2 = reconstruction_loss(recon, target, cfg.temporal_weight)
                perc = perceptual(fake.float(), real)
                kl = kl_divergence(mean.float(), logvar.float())
                loss = loss + cfg.perceptual_weight * perc + cfg.kl_weight * kl
                g_loss = torch.zeros((), device=d.device)
                if use_gan:
                    disc.requires_grad_(False)  # generator step: no discriminator gradients
                    g_loss = hinge_g_loss(disc(fake))
                    disc.requires_grad_(True)
                    loss = loss + cfg.gan_weight * g_loss
            stop_if_diverged(loss, step, "train vae", out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(vae.parameters(), step, "train vae", out)
            opt.step()

            d_loss = torch.zeros(())
            if use_gan:
                with autocast(d.device, cfg.precision):
                    d_loss = hinge_d_loss(disc_ddp(real), disc_ddp(fake.detach()))
                stop_if_diverged(d_loss, step, "train vae (discriminator)", out)
                disc_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_opt.step()

            values = {"loss": loss.item(), "l2": l2.item(), "perceptual": perc.item(), "kl": kl.item(),
                      "g_loss": g_loss.item(), "d_loss": d_loss.item(), "lr": lr}
            if d.main:
                csv_log.write(step + 1, values)
            bar.update(task, advance=1, status=f"loss {values['loss']:.4f} l2 {values['l2']:.4f}")
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
                ck = save(step + 1)
    return ck if ck is not None else ckpt_io.load(out)
