"""Reconstruction quality: PSNR / SSIM / motion ratio per clip (numpy), and FVD from a local I3D
TorchScript file (torch)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import NervError, reason
from ..runtime.pipeline import Pipeline
from ..runtime.video_io import list_videos, read_video
from .metrics import frechet_distance, motion, psnr, ssim


def clip_metrics(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """(PSNR in dB over the whole clip, mean per-frame SSIM) of two uint8 clips [T, H, W, 3]."""
    return psnr(real, fake), ssim(real, fake)


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


class FeatureExtractor:
    """A local TorchScript module mapping videos [B, 3, T, H, W] in [-1, 1] to features [B, D] (e.g. the I3D
    detector used for FVD, saved once with torch.jit.save). Nothing is downloaded."""

    def __init__(self, path: Path):
        import torch

        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as e:
            raise NervError(f"{path}: not a TorchScript feature extractor ({reason(e)})") from None

    def __call__(self, clip: np.ndarray) -> np.ndarray:
        """uint8 clip [T, H, W, 3] -> features [1, D]."""
        import torch

        x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
        with torch.no_grad():
            return self.net(x).reshape(1, -1).numpy()


def evaluate_reconstruction(pipe: Pipeline, data: Path, res: int | None = None, limit: int | None = None,
                            i3d: Path | None = None, refine_steps: int | None = None,
                            progress: Callable[[int, int], None] | None = None) -> dict[str, float | int | str]:
    """Mean PSNR / SSIM, the motion ratio (reconstructions' mean temporal change over the clips') over the first
    clip of every video under `data` (and FVD with an I3D file), the refinement steps and backend used. Clips
    are scored one at a time: memory does not grow with the folder."""
    refine_steps = pipe.default_refine_steps(res) if refine_steps is None else refine_steps
    paths = list_videos(data)[:limit]
    detector = FeatureExtractor(i3d) if i3d else None
    if detector is not None and len(paths) < 2:
        raise NervError("FVD needs at least 2 clips")
    scores, feats = [], []
    for k, path in enumerate(paths):
        clip, recon = reconstruct_clip(pipe, path, res, refine_steps)
        scores.append((*clip_metrics(clip, recon), motion(recon), motion(clip)))
        if detector is not None:
            feats.append((detector(clip), detector(recon)))
        if progress:
            progress(k + 1, len(paths))
    psnrs, ssims, moved, real_moved = (np.array(col) for col in zip(*scores))
    result: dict[str, float | int | str] = {
        "psnr": float(psnrs.mean()), "ssim": float(ssims.mean()),
        "motion_ratio": float(moved.mean() / max(real_moved.mean(), 1e-9)), "clips": len(paths),
        "refine_steps": refine_steps, "backend": pipe.describe()}
    if detector is not None:
        result["fvd"] = frechet_distance(np.concatenate([f[0] for f in feats]), np.concatenate([f[1] for f in feats]))
    return result
