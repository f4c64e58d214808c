"""VAE training losses: temporal term, perceptual term (LPIPS or a weight-free substitute), conv discriminator,
hinge GAN."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, NervError, option, reason


def psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB of a mean squared error between images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image (Wang et al. 2004, Gaussian 11x11, sigma 1.5) on [0, 1]-scaled inputs; differentiable
    (the numpy twin for evaluation, evaluate.metrics.ssim, gives the same figure: tests/test_eval.py).

    a, b: (B, C, H, W) in [-1, 1] -> (B,), always in fp32: the variances are differences of squares, E[a^2] - mu^2,
    which bf16 autocast (CUDA training) cancels to rounding noise on smooth frames. Under it the tiny VAE's first
    `train_default.sh --device cuda` run stalled at 9 dB (docs/default-model.md, "Training on a GPU").
    """
    with torch.autocast(a.device.type, enabled=False):
        a, b = (a.float() + 1) / 2, (b.float() + 1) / 2
        c1, c2 = 0.01**2, 0.03**2
        C = a.shape[1]
        w = _gaussian_window(window, sigma, C, a)
        mu_a, mu_b = F.conv2d(a, w, groups=C), F.conv2d(b, w, groups=C)
        var_a = F.conv2d(a * a, w, groups=C) - mu_a**2
        var_b = F.conv2d(b * b, w, groups=C) - mu_b**2
        cov = F.conv2d(a * b, w, groups=C) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        return s.flatten(1).mean(1)


def temporal_l2(recon: Tensor, target: Tensor) -> Tensor:
    """MSE between the frame-to-frame changes of recon and target, (B, K, 3, H, W) along K.

    A plain per-pixel L2 barely rewards motion: on the synthetic set a still frame at the clip's mid
    position scores 31 dB on a 10-px pan (docs/default-model.md, "Training for motion"). This term weighs exactly what such a
    frame gets wrong."""
    return F.mse_loss(recon.float().diff(dim=1), target.float().diff(dim=1))


def check_frames_per_step(frames_per_step: int) -> None:
    """Refuse a training config that samples fewer than two frames per clip: temporal_l2 compares consecutive
    sampled frames, and with one there is no change to compare (its loss, and so every step's, would be NaN)."""
    if frames_per_step < 2:
        raise ConfigError(f"frames_per_step must be 2 or more (the temporal term compares frames), got {frames_per_step}")


def check_frames_per_clip(frames_per_step: int, frames: int) -> None:
    """A step samples `frames_per_step` distinct frames of each clip: at most the model's clip length."""
    if frames_per_step > frames:
        raise NervError(f"{option('frames_per_step')} {frames_per_step} is more than the model's clips have ({frames})")


def reconstruction_loss(recon: Tensor, target: Tensor, temporal_weight: float) -> tuple[Tensor, Tensor]:
    """(L2 + temporal_weight * temporal L2, the plain L2) of frames (B, K, 3, H, W)."""
    l2 = F.mse_loss(recon.float(), target)
    return l2 + temporal_weight * temporal_l2(recon, target), l2


class StructuralLoss(nn.Module):
    """Weight-free perceptual substitute (used when no LPIPS weights file is given):
    1 - SSIM at full and half resolution, plus L1 between image gradients. Needs no download."""

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        loss = (1 - ssim(x, y)).mean() + (1 - ssim(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2))).mean()
        for dim in (-1, -2):
            loss = loss + (x.diff(dim=dim) - y.diff(dim=dim)).abs().mean()
        return loss


class TorchScriptLPIPS(nn.Module):
    """LPIPS from a local TorchScript file mapping (x, y) in [-1, 1] to per-image distances, e.g.
    `torch.jit.save(torch.jit.script(lpips.LPIPS(net='vgg')), 'lpips_vgg.pt')` made once elsewhere."""

    def __init__(self, path: str | Path):
        super().__init__()
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as e:
            raise NervError(f"{path}: not a TorchScript LPIPS module ({reason(e)})") from None
        for p in self.net.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):  # it normalizes its features: fp32, as ssim()
            return self.net(x.float(), y.float()).mean()


def perceptual_loss(lpips_path: str | Path | None) -> nn.Module:
    return TorchScriptLPIPS(lpips_path) if lpips_path else StructuralLoss()


class PatchDiscriminator(nn.Module):
    """Small PatchGAN-style conv discriminator on single frames (B, 3, H, W) -> patch logits."""

    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(layers - 1):
            mods += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    return -fake_logits.mean()
