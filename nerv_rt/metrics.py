"""Image-quality metrics on frames in [-1, 1]: PSNR and SSIM (torch, differentiable)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB of a mean squared error between images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-image PSNR in dB for images in [-1, 1].  (B, ...) -> (B,)"""
    return psnr_from_mse((a - b).pow(2).flatten(1).mean(1))


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image (Wang et al. 2004, Gaussian 11x11, sigma 1.5) on [0, 1]-scaled inputs.

    a, b: (B, C, H, W) in [-1, 1] -> (B,)
    """
    a, b = (a + 1) / 2, (b + 1) / 2
    c1, c2 = 0.01**2, 0.03**2
    C = a.shape[1]
    w = _gaussian_window(window, sigma, C, a)
    mu_a, mu_b = F.conv2d(a, w, groups=C), F.conv2d(b, w, groups=C)
    var_a = F.conv2d(a * a, w, groups=C) - mu_a**2
    var_b = F.conv2d(b * b, w, groups=C) - mu_b**2
    cov = F.conv2d(a * b, w, groups=C) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)
