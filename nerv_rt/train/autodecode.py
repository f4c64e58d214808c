"""Autodecoder fine-tuning of the NeRV decoder (DeepSDF-style), after `train vae`.

Every training video gets its own free weight tokens: a bank initialised from the encoder's
posterior means of its first clip. The decoder and the bank are trained together on L2 plus the
temporal term, so the decoder learns to render from the best tokens each clip can have rather than
from what the encoder finds. With `encoder_weight > 0` the encoder learns alongside: it regresses
the bank's tokens and renders through the decoder from its own tokens, which keeps the two
compatible. A learning rate of 0 freezes the decoder (`lr`) or the bank (`token_lr`): with both frozen and the
encoder learning, the run is an encoder-only stage against a finished decoder and bank (its `init` an autodecode
checkpoint, whose bank carries over). The bank is what `train dit` then learns to generate (it carries the motion the
encoder's tokens lose), and held-out clips reach such tokens by token refinement
(models/refine.py), the output's default encoding. What it buys on the default model: README,
"Results of the shipped model", and docs/default-model.md, "Training for motion".
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import checkpoint as ckpt_io
from ..data.video_folder import VideoFolder
from ..errors import NervError, warn
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

DIVERGED_FIX = "a smaller --lr, --token-lr or --encoder-lr"  # any of the three rates can diverge a run


@dataclass
class AutodecodeConfig:
    steps: int = 4000
    batch: int = 8  # videos per step
    frames_per_step: int = 4  # frames of each clip rendered per step
    lr: float = 5e-4  # decoder: warm-up, then cosine to 10%; 0 freezes it
    token_lr: float = 1e-2  # the token bank (sparse Adam, constant); 0 freezes it
    temporal_weight: float = 1.0  # L2 on frame-to-frame changes (losses.temporal_l2)
    encoder_weight: float = 0.1  # encoder's L2 onto the bank's tokens (plus its own pixel loss); 0 freezes it
    encoder_lr: float = 2e-4  # warm-up, then cosine to 10%, as the decoder
    # Gaussian noise on the tokens the decoder renders from, times the bank's per-value std: the decoder learns to
    # render a clip from points around its entry, so points between two entries of a class keep the class
    # (docs/default-model.md, "Noise on the bank's tokens"); 0 renders the entries themselves
    token_noise: float = 0.0
    ckpt_every: int = 250
    seed: int = 0
    refine_steps: int = 80  # stored in the output's config: its default encoding (models/refine.py)
    precision: str = "auto"  # auto | fp32 | bf16: the steps' compute precision (common.autocast)

    def __post_init__(self) -> None:
        check_frames_per_step(self.frames_per_step)
        check_precision(self.precision)
        check_run_config(self)


@torch.no_grad()
def encode_first_clips(encoder: torch.nn.Module, data: VideoFolder, device: torch.device, bar=None,
                       batch: int = 16) -> torch.Tensor:
    """Posterior means of every video's first clip.  -> (n_videos, N, d_z)"""
    task = bar.add_task("encode clips", total=len(data), status="") if bar else None
    means = []
    for start in range(0, len(data), batch):
        idx = range(start, min(start + batch, len(data)))
        video, _ = data.batch(idx, [0.0] * len(idx))
        means.append(encoder(video.to(device))[0].float().cpu())
        if bar:
            bar.update(task, advance=len(idx))
    return torch.cat(means)


def bank_videos(data: VideoFolder) -> str:
    """Which videos a bank's rows are, in order: sha256 of their paths relative to the folder."""
    names = "\n".join(p.relative_to(data.root).as_posix() for p in data.paths)
    return hashlib.sha256(names.encode()).hexdigest()


def check_bank_videos(train_state: dict, videos_id: str, data_dir: Path) -> None:
    """Refuse a bank made for other videos (checkpoints from before the record pass unchecked)."""
    saved = train_state.get("bank_videos")
    if saved is not None and saved != videos_id:
        raise NervError(f"the bank was trained on other videos than {data_dir}'s (names differ); use its folder")


def frozen_parts(cfg: dict) -> set[str]:
    """Which of decoder, bank, encoder a run's config (as saved: `asdict(AutodecodeConfig)`) keeps fixed."""
    return {name for name, frozen in (("decoder", cfg.get("lr", 1) == 0), ("bank", cfg.get("token_lr", 1) == 0),
                                      ("encoder", cfg.get("encoder_weight", 1) == 0 or cfg.get("encoder_lr", 1) == 0))
            if frozen}


def warn_if_freezing_changed(saved: dict, cfg: AutodecodeConfig) -> None:
    """A resume takes the flags given; say so when they freeze other parts than the saved run did."""
    before, now = frozen_parts(saved), frozen_parts(asdict(cfg))
    if saved and before != now:
        warn(f"--resume: the saved run froze {', '.join(sorted(before)) or 'nothing'}; these flags freeze "
             f"{', '.join(sorted(now)) or 'nothing'} (pass the run's --lr / --token-lr / --encoder-weight to "
             "keep it)")


def train_autodecode(data_dir: Path, init: Path, out: Path, cfg: AutodecodeConfig, device: str = "auto",
                     resume: bool = False, log: Path | None = None, show_progress: bool = True) -> ckpt_io.Checkpoint:
    """Fine-tune the VAE of checkpoint `init` on `data_dir` with a bank of free per-video tokens; write
    OUT: the new VAE (no DiT: train one on the bank with `train dit`), its train state holding the bank."""
    require_single_process("train autodecode", "its token bank is not sharded")
    frozen = frozen_parts(asdict(cfg))
    trains_encoder = "encoder" not in frozen
    if len(frozen) == 3:
        raise NervError("train autodecode: nothing to train (--lr, --token-lr and --encoder-weight or --encoder-lr "
                        "are all 0)")
    check_out_path(out, resume)
    dev = pick_device(device)
    base = ckpt_io.load(out if resume else init)
    init_state = {} if resume else base.train_state or {}
    init_bank = init_state.get("bank") if init_state.get("kind") == "autodecode" else None
    base = replace(base, config=replace(base.config, refine_steps=cfg.refine_steps), dit=None, ema=None)
    model_cfg = base.config
    check_frames_per_clip(cfg.frames_per_step, model_cfg.frames)
    data = VideoFolder(data_dir, model_cfg.frames, model_cfg.res)
    videos_id = bank_videos(data)
    if cfg.token_lr == 0 and init_bank is None and not resume:
        raise NervError(f"--token-lr 0 keeps a bank, but --init {init} holds none: --init an autodecode checkpoint")
    vae, _ = ckpt_io.build_models(base, dev)
    decoder, encoder = vae.decoder.train(), vae.encoder.train()
    encoder.requires_grad_(trains_encoder)
    decoder.requires_grad_(cfg.lr > 0)
    n_tokens = model_cfg.tokens * model_cfg.token_dim
    bank = torch.nn.Embedding(len(data), n_tokens, sparse=True).to(dev)
    bank.weight.requires_grad_(cfg.token_lr > 0)
    if init_bank is not None and init_bank.shape != bank.weight.shape:
        raise NervError(f"--init {init} holds tokens for {init_bank.shape[0]} videos of {init_bank.shape[1]} values, "
                        f"{data_dir} needs {len(data)} of {n_tokens}: fine-tune its VAE with `train vae --init` first")
    check_bank_videos(base.train_state or {}, videos_id, data_dir)  # the resumed run's, or --init's
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    enc_opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.encoder_lr, betas=(0.9, 0.95), weight_decay=0.0)
    bank_opt = torch.optim.SparseAdam(bank.parameters(), lr=cfg.token_lr or AutodecodeConfig.token_lr)  # refuses 0
    times = torch.from_numpy(frame_times(model_cfg.frames)).to(dev)
    start = 0

    def save(step: int) -> ckpt_io.Checkpoint:
        ck = replace(base, vae={k: v.detach().cpu() for k, v in vae.state_dict().items()},
                     train_state={"kind": "autodecode", "step": step, "bank": bank.weight.detach().cpu(),
                                  "optim": opt.state_dict(), "encoder_optim": enc_opt.state_dict(),
                                  "bank_optim": bank_opt.state_dict(), "train_config": asdict(cfg),
                                  "bank_videos": videos_id})
        ckpt_io.save(ck, out)
        return ck

    with progress_bar(show_progress) as bar:
        if resume:
            ts = base.train_state
            resume_state(ts, out, "autodecode", ("step", "bank", "optim", "encoder_optim", "bank_optim"), cfg)
            if ts["bank"].shape[0] != len(data):
                raise NervError(f"--resume: {out} holds tokens for {ts['bank'].shape[0]} videos, {data_dir} has {len(data)}")
            warn_if_freezing_changed(ts.get("train_config", {}), cfg)
            bank.weight.data.copy_(ts["bank"])
            opt.load_state_dict(ts["optim"])
            enc_opt.load_state_dict(ts["encoder_optim"])
            bank_opt.load_state_dict(ts["bank_optim"])
            if cfg.token_lr > 0:  # the loaded state holds the saved run's rate (1e-2 when its bank was frozen)
                for group in bank_opt.param_groups:
                    group["lr"] = cfg.token_lr
            start = int(ts["step"])
        elif init_bank is not None:  # an autodecode checkpoint: its bank goes on from where it was
            bank.weight.data.copy_(init_bank)
        else:
            bank.weight.data.copy_(encode_first_clips(vae.encoder, data, dev, bar).flatten(1))
        csv_log = CsvLog(log, ["loss", "l2", "psnr", "encoder_l2", "token_l2", "lr"], start)
        ck = None
        task = bar.add_task("train autodecode", total=cfg.steps, completed=start, status="")
        for step in range(start, cfg.steps):
            g = step_generator(cfg.seed, step)
            idx = torch.randint(len(data), (cfg.batch,), generator=g)
            frame_idx = torch.randperm(model_cfg.frames, generator=g)[:cfg.frames_per_step].sort().values
            videos, _ = data.batch(idx, [0.0] * cfg.batch)
            target = videos[:, frame_idx].to(dev)
            lr = lr_at(step, cfg.steps, cfg.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            for group in enc_opt.param_groups:
                group["lr"] = lr_at(step, cfg.steps, cfg.encoder_lr)
            tokens = bank(idx.to(dev)).view(cfg.batch, model_cfg.tokens, model_cfg.token_dim)
            rendered = tokens
            if cfg.token_noise > 0:
                std = bank.weight.detach().std(0).view(model_cfg.tokens, model_cfg.token_dim)
                rendered = tokens + cfg.token_noise * std * torch.randn(tokens.shape, generator=g).to(dev)
            t = times[frame_idx.to(dev)]
            with autocast(dev, cfg.precision):
                loss, l2 = reconstruction_loss(decoder(rendered, t), target, cfg.temporal_weight)
                enc_l2 = token_l2 = torch.zeros((), device=dev)
                if trains_encoder:  # the encoder regresses the bank and renders through the decoder
                    mean = encoder(videos.to(dev))[0]
                    token_l2 = F.mse_loss(mean.float(), tokens.detach())
                    enc_loss, enc_l2 = reconstruction_loss(decoder(mean, t), target, cfg.temporal_weight)
                    loss = loss + enc_loss + cfg.encoder_weight * token_l2
            stop_if_diverged(loss, step, "train autodecode", out, fix=DIVERGED_FIX)
            opt.zero_grad(set_to_none=True)
            enc_opt.zero_grad(set_to_none=True)
            bank_opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.lr > 0:  # both norms are checked before either optimizer steps
                clip_gradients(decoder.parameters(), step, "train autodecode", out, "decoder's gradient norm", DIVERGED_FIX)
            if trains_encoder:
                clip_gradients(encoder.parameters(), step, "train autodecode", out, "encoder's gradient norm", DIVERGED_FIX)
            if cfg.lr > 0:
                opt.step()
            if cfg.token_lr > 0:
                bank_opt.step()
            if trains_encoder:
                enc_opt.step()
            psnr = psnr_from_mse(l2.detach()).item()
            csv_log.write(step + 1, {"loss": loss.item(), "l2": l2.item(), "psnr": psnr, "encoder_l2": enc_l2.item(),
                                     "token_l2": token_l2.item(), "lr": lr})
            bar.update(task, advance=1, status=f"l2 {l2.item():.4f} ({psnr:.1f} dB)")
            if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
                ck = save(step + 1)
    return ck if ck is not None else ckpt_io.load(out)
