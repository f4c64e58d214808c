"""Positional and timestep encodings (pure functions of their inputs)."""
from __future__ import annotations

import math

import torch
from torch import Tensor


def fourier_bands(p: Tensor, freqs: int, base: float = 1.25) -> Tensor:
    """gamma(p) = [sin(base^i pi p), cos(base^i pi p)], i < freqs.  (...,) -> (..., 2*freqs)"""
    bands = base ** torch.arange(freqs, dtype=p.dtype, device=p.device) * math.pi
    angles = p[..., None] * bands
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def nerv_positional_encoding(frame_t: Tensor, grid: int, freqs: int) -> Tensor:
    """3-D encoding of (t, x, y) on a grid x grid lattice per frame time.

    frame_t (F,) in [0, 1] -> (F, 6*freqs, grid, grid). x, y are cell centres in (0, 1), so the
    same grid serves every resolution; the decoder upsamples from it.
    """
    n_frames = frame_t.shape[0]
    centres = (torch.arange(grid, dtype=frame_t.dtype, device=frame_t.device) + 0.5) / grid
    et = fourier_bands(frame_t, freqs)[:, None, None, :]  # (F, 1, 1, 2L)
    ex = fourier_bands(centres, freqs)[None, None, :, :]  # (1, 1, g, 2L): x runs along width
    ey = fourier_bands(centres, freqs)[None, :, None, :]  # (1, g, 1, 2L)
    shape = (n_frames, grid, grid, 2 * freqs)
    pe = torch.cat([et.expand(shape), ex.expand(shape), ey.expand(shape)], dim=-1)  # (F, g, g, 6L)
    return pe.permute(0, 3, 1, 2)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, as in DiT.  (B,) -> (B, dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_embedding(grid_shape: tuple[int, ...], dim: int) -> Tensor:
    """Fixed sin-cos embedding of an n-D patch lattice, dim split evenly over the axes.

    Returns (1, prod(grid_shape), dim), row-major over the lattice.
    """
    n_axes = len(grid_shape)
    per_axis = 2 * (dim // (2 * n_axes))
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in grid_shape], indexing="ij")
    parts = []
    for pos in axes:
        omega = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float32) / (per_axis // 2))
        ang = pos.reshape(-1, 1) * omega[None]
        parts += [ang.sin(), ang.cos()]
    emb = torch.cat(parts, dim=1)
    emb = torch.nn.functional.pad(emb, (0, dim - emb.shape[1]))  # dim not divisible by 2*n_axes
    return emb[None]
