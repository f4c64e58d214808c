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
# 0.03 / 0.1 / 0.3 -> 24.5 / 25.3 / 26.0 / 25.8 dB. Each step renders a random 4 of the clip's frames: 4x
# cheaper per step than all 16, and 40 such steps beat 20 steps on every frame (README, "Token refinement").
REFINE_LR = 0.1
FRAMES_PER_STEP = 4


def refine_tokens(decoder: nn.Module, tokens: Tensor, frame_t: Tensor, video: Tensor, steps: int,
                  lr: float = REFINE_LR, frames_per_step: int = FRAMES_PER_STEP, seed: int = 0) -> Tensor:
    """tokens (B, N, d_z) -> the tokens after `steps` Adam steps (cosine-decayed lr) on the MSE between
    decoder(tokens, frame_t[k]) and video[:, k], video (B, T, 3, H, W) in [-1, 1] with times frame_t (T,),
    over a random subset k of `frames_per_step` frames per step. The decoder's weights are untouched."""
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
            k = torch.randperm(n_frames, generator=generator)[:frames_per_step].to(video.device)
            err = decoder(z, frame_t[k]) - video[:, k]
            loss = err.float().pow(2).flatten(1).mean(1).sum()  # summed per-clip means: clips stay independent
            (z.grad,) = torch.autograd.grad(loss, [z])  # gradients for the tokens only, none for the weights
            opt.step()
            schedule.step()
    return z.detach()
