"""Semi-amortized encoding: Adam steps on the weight tokens against the frozen decoder.

The encoder's tokens are a first guess (amortized inference). A few gradient steps on the tokens
alone, with the reconstruction error of the clip as the loss, close much of the gap to the best
tokens the decoder can use (Kim et al. 2018, "Semi-Amortized Variational Autoencoders"). It needs
autograd through the decoder, so it runs with the torch backends only.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

# Measured on the default 128^2 model before `train autodecode` (8 held-out clips, 20 steps): lr 0.01 /
# 0.03 / 0.1 / 0.3 -> 24.5 / 25.3 / 26.0 / 25.8 dB; on the shipped one (16 clips, 80 steps) 0.05 / 0.1 / 0.2 ->
# 27.83 / 28.11 / 27.73 dB. Each step renders a random 4 of the clip's frames: 4x cheaper per step than all 16,
# and 40 such steps beat 20 steps on every frame; 8 frames per step gave nothing at twice the cost (README,
# "Token refinement").
REFINE_LR = 0.1
FRAMES_PER_STEP = 4
# The temporal term of training (train/losses.py, temporal_l2) on the rendered frames' changes. On the shipped
# 128^2 model (16 held-out clips, 40 steps) weight 0 / 1 / 3 -> 26.99 / 27.15 / 27.07 dB, motion ratio 0.58 /
# 0.64 / 0.66 (README, "Token refinement"). A module constant, not a config field: every model refines with it.
TEMPORAL_WEIGHT = 1.0


def refinement_loss(err: Tensor, temporal_weight: float) -> Tensor:
    """Per-clip loss of rendered minus target frames err (B, K, 3, H, W), K in time order: the frames' MSE plus
    temporal_weight x the MSE of their changes from one frame to the next (none for a single frame).  -> (B,)"""
    err = err.float()
    frames = err.pow(2).flatten(1).mean(1)
    if err.shape[1] < 2:
        return frames
    return frames + temporal_weight * err.diff(dim=1).pow(2).flatten(1).mean(1)


def refine_tokens(decoder: nn.Module, tokens: Tensor, frame_t: Tensor, video: Tensor, steps: int,
                  lr: float = REFINE_LR, frames_per_step: int = FRAMES_PER_STEP,
                  temporal_weight: float = TEMPORAL_WEIGHT, seed: int = 0) -> Tensor:
    """tokens (B, N, d_z) -> the tokens after `steps` Adam steps (cosine-decayed lr) on the error between
    decoder(tokens, frame_t[k]) and video[:, k], video (B, T, 3, H, W) in [-1, 1] with times frame_t (T,),
    over a random ordered subset k of `frames_per_step` frames per step: the MSE of the frames plus
    `temporal_weight` x the MSE of their changes from one frame of k to the next. The decoder's weights are
    untouched."""
    if steps < 0:
        raise ValueError(f"refinement steps must be >= 0, got {steps}")
    z = tokens.detach().float().clone().requires_grad_(True)
    if steps == 0:
        return z.detach()
    opt = torch.optim.Adam([z], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(seed)
    n_frames = frame_t.shape[0]
    with torch.enable_grad():
        for _ in range(steps):
            k = torch.randperm(n_frames, generator=generator)[:frames_per_step].sort().values.to(video.device)
            err = decoder(z, frame_t[k]) - video[:, k]
            loss = refinement_loss(err, temporal_weight).sum()  # summed per clip: clips stay independent
            (z.grad,) = torch.autograd.grad(loss, [z])  # gradients for the tokens only, none for the weights
            opt.step()
            schedule.step()
    return z.detach()
