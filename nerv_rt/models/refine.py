"""Semi-amortized encoding: Adam steps on the weight tokens against the frozen decoder.

The encoder's tokens are a first guess (amortized inference). A few gradient steps on the tokens
alone, with the reconstruction error of the clip as the loss, close much of the gap to the best
tokens the decoder can use (Kim et al. 2018, "Semi-Amortized Variational Autoencoders"). It needs
autograd through the decoder, so it runs with the torch backends only.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError

# Measured on an earlier default 128^2 model (8 held-out clips, 20 steps): lr 0.01 / 0.03 / 0.1 / 0.3 -> 24.5 /
# 25.3 / 26.0 / 25.8 dB; on a later one (16 clips, 80 steps) 0.05 / 0.1 / 0.2 -> 27.83 / 28.11 / 27.73 dB. Each
# step renders 4 of the clip's frames, one from each quarter of it (`stratified_frames`): 4x cheaper per step than
# all 16, and 40 such steps beat 20 steps on every frame; 8 frames per step gave nothing at twice the cost.
REFINE_LR = 0.1
FRAMES_PER_STEP = 4
# The temporal term of training (train/losses.py, temporal_l2) on the rendered frames' changes: it is what keeps
# the clip's motion. On the 128^2 model of c0458aa (32 held-out clips, 80 steps; docs/default-model.md, "Token
# refinement, the probe behind its default") weight
# 1 / 3 / 6 / 8 gives motion ratio 0.81 / 0.83 / 0.85 / 0.86 for 28.8 / 28.8 / 28.4 / 28.2 dB; at 256^2 weight 8
# gives 0.86 for 28.0 dB (weight 1: 0.80, 28.4 dB). A module constant, not a config field: every model refines
# with it.
TEMPORAL_WEIGHT = 8.0


def refinement_loss(err: Tensor, temporal_weight: float) -> Tensor:
    """Per-clip loss of rendered minus target frames err (B, K, 3, H, W), K in time order: the frames' MSE plus
    temporal_weight x the MSE of their changes from one frame to the next (none for a single frame).  -> (B,)"""
    err = err.float()
    frames = err.pow(2).flatten(1).mean(1)
    if err.shape[1] < 2:
        return frames
    return frames + temporal_weight * err.diff(dim=1).pow(2).flatten(1).mean(1)


def stratified_frames(n_frames: int, k: int, generator: torch.Generator) -> Tensor:
    """k frame indices in time order, one drawn from each of k equal spans of the n_frames (all frames when
    k >= n_frames): every step sees the whole clip's duration, so the temporal term spans its motion.  -> (k,)"""
    if k >= n_frames:
        return torch.arange(n_frames)
    bounds = torch.arange(k + 1) * n_frames // k
    return bounds[:-1] + (torch.rand(k, generator=generator) * (bounds[1:] - bounds[:-1])).long()


def refine_tokens(decoder: nn.Module, tokens: Tensor, frame_t: Tensor, video: Tensor, steps: int,
                  lr: float = REFINE_LR, frames_per_step: int = FRAMES_PER_STEP,
                  temporal_weight: float = TEMPORAL_WEIGHT, seed: int = 0) -> Tensor:
    """tokens (B, N, d_z) -> the tokens after `steps` Adam steps (cosine-decayed lr) on the error between
    decoder(tokens, frame_t[k]) and video[:, k], video (B, T, 3, H, W) in [-1, 1] with times frame_t (T,),
    over `frames_per_step` frames k per step (`stratified_frames`): the MSE of the frames plus
    `temporal_weight` x the MSE of their changes from one frame of k to the next. The decoder's weights are
    untouched."""
    if steps < 0:
        raise ConfigError(f"refinement steps must be >= 0, got {steps}")
    z = tokens.detach().float().clone().requires_grad_(True)
    if steps == 0:
        return z.detach()
    opt = torch.optim.Adam([z], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    generator = torch.Generator().manual_seed(seed)
    n_frames = frame_t.shape[0]
    with torch.enable_grad():
        for _ in range(steps):
            k = stratified_frames(n_frames, frames_per_step, generator).to(video.device)
            err = decoder(z, frame_t[k]) - video[:, k]
            loss = refinement_loss(err, temporal_weight).sum()  # summed per clip: clips stay independent
            (z.grad,) = torch.autograd.grad(loss, [z])  # gradients for the tokens only, none for the weights
            opt.step()
            schedule.step()
    return z.detach()
