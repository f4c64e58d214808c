"""Reconstruction quality: PSNR / SSIM per clip, and FVD from a local I3D TorchScript file."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .data.video_folder import list_videos
from .errors import NervError
from .metrics import ssim
from .runtime.pipeline import Pipeline
from .runtime.video_io import read_video


def clip_metrics(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB over the whole clip, mean per-frame SSIM) of two uint8 clips [T, H, W, 3]."""
    mse = np.mean((real.astype(np.float64) - fake.astype(np.float64)) ** 2)
    psnr = float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
    to_t = lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    return psnr, float(ssim(to_t(real), to_t(fake)).mean())


def reconstruct_clip(pipe: Pipeline, video: Path, res: int | None = None,
                     refine_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(first clip of `video` at the model's size, its reconstruction), both uint8 [T, H, W, 3];
    `refine_steps` Adam steps on the tokens after the encoder (Pipeline.encode; None = the model's)."""
    cfg = pipe.model(res).config
    clip = read_video(video, 0, cfg.frames, cfg.res)
    if len(clip) < cfg.frames:
        raise NervError(f"{video}: {len(clip)} frames, the model encodes clips of {cfg.frames}")
    tokens = pipe.encode(clip[None], cfg.res, refine_steps)
    return clip, pipe.decode(tokens, cfg.frames, cfg.res)[0]


def load_i3d(path: Path) -> torch.jit.ScriptModule:
    """A TorchScript module mapping videos [B, 3, T, H, W] in [-1, 1] to features [B, D] (e.g. the I3D
    detector used for FVD, saved once with torch.jit.save). Nothing is downloaded."""
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise NervError(f"{path}: not a TorchScript feature extractor ({str(e).splitlines()[0][:100]})") from None


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a, b [n, D] (FID / FVD formula)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def evaluate_reconstruction(pipe: Pipeline, data: Path, res: int | None = None, limit: int | None = None,
                            i3d: Path | None = None, refine_steps: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict[str, float | int]:
    """Mean PSNR / SSIM over the first clip of every video under `data` (and FVD with an I3D file),
    and the refinement steps used (None = the model's default on this backend)."""
    refine_steps = pipe.default_refine_steps(res) if refine_steps is None else refine_steps
    paths = list_videos(data)[:limit]
    detector = load_i3d(i3d) if i3d else None
    if detector is not None and len(paths) < 2:
        raise NervError("FVD needs at least 2 clips")
    psnrs, ssims, feats_real, feats_fake = [], [], [], []
    for k, path in enumerate(paths):
        clip, recon = reconstruct_clip(pipe, path, res, refine_steps)
        p, s = clip_metrics(clip, recon)
        psnrs.append(p)
        ssims.append(s)
        if detector is not None:
            with torch.no_grad():
                for v, feats in ((clip, feats_real), (recon, feats_fake)):
                    x = torch.from_numpy(v).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
                    feats.append(detector(x).reshape(1, -1).numpy())
        if progress:
            progress(k + 1, len(paths))
    result: dict[str, float | int] = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "clips": len(paths),
                                      "refine_steps": refine_steps}
    if detector is not None:
        result["fvd"] = frechet_distance(np.concatenate(feats_real), np.concatenate(feats_fake))
    return result
