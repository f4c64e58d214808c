"""VAE training losses: temporal term, perceptual term (LPIPS or a weight-free substitute), conv discriminator,
hinge GAN."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import NervError
from ..metrics import ssim


def temporal_l2(recon: Tensor, target: Tensor) -> Tensor:
    """MSE between the frame-to-frame changes of recon and target, (B, K, 3, H, W) along K.

    A plain per-pixel L2 barely rewards motion: on the synthetic set a still frame at the clip's mid
    position scores 31 dB on a 10-px pan (README, "Motion"). This term weighs exactly what such a
    frame gets wrong."""
    return F.mse_loss(recon.diff(dim=1).float(), target.diff(dim=1).float())


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
            raise NervError(f"{path}: not a TorchScript LPIPS module ({str(e).splitlines()[0][:100]})") from None
        for p in self.net.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.net(x, y).mean()


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
