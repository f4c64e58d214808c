"""Encoder stage: the encoder alone fitted against a finished, frozen decoder (amortized inference).

The loss is the decoder's render of the encoder's posterior means against the clip (L2 plus the temporal term),
so any folder of clips serves, not only the videos of an autodecoder bank: the stage can see more clips than the
bank holds (on 512 clips the encoder overfits: docs/default-model.md, "The encoder alone, again"). Everything else in the
checkpoint (decoder, DiT, EMA, token statistics) carries over unchanged, so it can run last, after `train dit`.
The encoder's log-variance head gets no gradient: the encoder's tokens are its means (encode, token refinement's
first guess).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import checkpoint as ckpt_io
from ..data.video_folder import VideoFolder
from ..errors import NervError
from ..runtime.frames import frame_times
from .common import (
    CsvLog,
    autocast,
    check_out_path,
    clip_gradients,
    lr_at,
    pick_device,
    progress_bar,
    require_single_process,
    resume_state,
    step_generator,
    stop_if_diverged,
)
from .losses import check_frames_per_clip, check_frames_per_step, psnr_from_mse, reconstruction_loss
from .precision import check_precision, check_run_config


@dataclass
class EncoderStageConfig:
    steps: int = 3000
    batch: int = 8  # clips per step
    frames_per_step: int = 4  # frames of each clip rendered per step
    lr: float = 1e-3  # warm-up, then cosine to 10%
    temporal_weight: float = 1.0  # L2 on frame-to-frame changes (losses.temporal_l2)
    ckpt_every: int = 250
    seed: int = 0
    # stored in the output's config as its default encoding (models/refine.py); None keeps the checkpoint's. A
    # better first guess alone is not a better start for refinement (docs/default-model.md, "The encoder fitted last")
    refine_steps: int | None = None
    precision: str = "auto"  # auto | fp32 | bf16: the steps' compute precision (common.autocast)

    def __post_init__(self) -> None:
        check_frames_per_step(self.frames_per_step)
        check_precision(self.precision)
        check_run_config(self)


def train_encoder(data_dir: Path, init: Path, out: Path, cfg: EncoderStageConfig, device: str = "auto",
                  resume: bool = False, log: Path | None = None, show_progress: bool = True) -> ckpt_io.Checkpoint:
    """Fit the encoder of checkpoint `init` to render the clips of `data_dir` through its frozen decoder; write OUT:
    `init` with the new encoder (its train state: this stage's)."""
    require_single_process("train encoder")
    if cfg.lr <= 0:
        raise NervError(f"train encoder: --lr {cfg.lr} trains nothing; give a rate > 0")
    check_out_path(out, resume)
    dev = pick_device(device)
    base = ckpt_io.load(out if resume else init)
    if not resume and base.dit is None:  # an autodecode run: its train state (the bank) would be replaced
        raise NervError(f"--init {init} holds no DiT: the encoder stage comes last, after `train dit` "
                        "(decoder and DiT carry over as they are)")
    if cfg.refine_steps is not None:
        base = replace(base, config=replace(base.config, refine_steps=cfg.refine_steps))
    model_cfg = base.config
    check_frames_per_clip(cfg.frames_per_step, model_cfg.frames)
    data = VideoFolder(data_dir, model_cfg.frames, model_cfg.res)
    vae, _ = ckpt_io.build_models(base, dev)
    decoder, encoder = vae.decoder.eval(), vae.encoder.train()
    decoder.requires_grad_(False)
    opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    times = torch.from_numpy(frame_times(model_cfg.frames)).to(dev)
    start = 0
    if resume:
        ts = base.train_state
        resume_state(ts, out, "encoder", ("step", "optim"), cfg)
        opt.load_state_dict(ts["optim"])
        start = int(ts["step"])
    csv_log = CsvLog(log, ["loss", "l2", "psnr", "lr"], start)

    def save(step: int) -> ckpt_io.Checkpoint:
        ck = replace(base, vae={k: v.detach().cpu() for k, v in vae.state_dict().items()},
                     train_state={"kind": "encoder", "step": step, "optim": opt.state_dict(),
                                  "train_config": asdict(cfg)})
        ckpt_io.save(ck, out)
        return ck

    ck = None
    with progress_bar(show_progress) as bar:
        task = bar.add_task("train encoder", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            g = step_generator(cfg.seed, step)
            idx = torch.randint(len(data), (cfg.batch,), generator=g)
            starts = torch.rand(cfg.batch, generator=g).tolist()
            frame_idx = torch.randperm(model_cfg.frames, generator=g)[:cfg.frames_per_step].sort().values
            videos, _ = data.batch(idx, starts)
            videos = videos.to(dev)
            lr = lr_at(step, cfg.steps, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(dev, cfg.precision):
                mean = encoder(videos)[0]
                loss, l2 = reconstruction_loss(decoder(mean, times[frame_idx.to(dev)]), videos[:, frame_idx],
                                               cfg.temporal_weight)
            stop_if_diverged(loss, step, "train encoder", out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(encoder.parameters(), step, "train encoder", out)
            opt.step()
            psnr = psnr_from_mse(l2.detach()).item()
            csv_log.write(step + 1, {"loss": loss.item(), "l2": l2.item(), "psnr": psnr, "lr": lr})
            bar.update(task, advance=1, status=f"l2 {l2.item():.4f} ({psnr:.1f} dB)")
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
                ck = save(step + 1)
    return ck if ck is not None else ckpt_io.load(out)
