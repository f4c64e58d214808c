"""A deterministic synthetic video set that needs no download.

Camera pans and zooms over the photos that ship inside scikit-image, and coloured shapes moving
over smooth gradients; the label is the motion kind. Clip i of a set depends only on (seed, i).

The set is deliberately easy: seven photos, windows that show most of a photo, gentle motion and
detail only down to ~3 output pixels. It exists so that the tiny embedded model, trained on a CPU in
about an hour, reconstructs held-out clips well; it is a smoke-test distribution, not UCF-101.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..formats import NEW_FOLDER, atomic_path

MOTIONS = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out", "shapes_drift", "shapes_bounce")
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "rocket", "retina")
_PHOTO_CACHE: dict[str, np.ndarray] = {}


def _photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as float32 (H, W, 3) in [0, 1]."""
    if name not in _PHOTO_CACHE:
        import skimage.data

        _PHOTO_CACHE[name] = np.asarray(getattr(skimage.data, name)()[..., :3], np.float32) / 255.0
    return _PHOTO_CACHE[name]


def _sample_window(photo: np.ndarray, centres: np.ndarray, sizes: np.ndarray, res: int, blur: float) -> np.ndarray:
    """Bilinear crops of `photo`: square windows of side sizes[k] (photo px) centred at centres[k] (y, x),
    each resampled to res x res. The photo is low-passed once so that the frames carry detail down
    to about `blur` output pixels (and no aliasing).  -> (T, res, res, 3)"""
    scale = float(np.mean(sizes)) / res  # photo pixels per output pixel
    sigma = scale * max(blur, 0.5)
    smooth = np.stack([ndimage.gaussian_filter(photo[..., c], sigma) for c in range(3)], axis=-1)
    frames = np.empty((len(centres), res, res, 3), np.float32)
    grid = (np.arange(res, dtype=np.float32) + 0.5) / res - 0.5
    for k, ((cy, cx), size) in enumerate(zip(centres, sizes)):
        ys, xs = np.meshgrid(cy + grid * size, cx + grid * size, indexing="ij")
        for c in range(3):
            frames[k, ..., c] = ndimage.map_coordinates(smooth[..., c], [ys, xs], order=1, mode="reflect")
    return frames


def _camera_clip(rng: np.random.Generator, motion: str, res: int, n_frames: int, blur: float) -> np.ndarray:
    photo = _photo(PHOTOS[rng.integers(len(PHOTOS))])
    H, W = photo.shape[:2]
    s = np.linspace(0.0, 1.0, n_frames)
    side = min(H, W) * rng.uniform(0.75, 0.85)  # window side in photo pixels: most of the photo in view
    if motion.startswith("pan"):
        travel = side * rng.uniform(0.08, 0.15)
        axis, sign = {"pan_left": (1, -1), "pan_right": (1, 1), "pan_up": (0, -1), "pan_down": (0, 1)}[motion]
        lo = side / 2 + (travel if sign < 0 else 0)
        hi = (H, W)[axis] - side / 2 - (travel if sign > 0 else 0)
        start = np.array([rng.uniform(side / 2, H - side / 2), rng.uniform(side / 2, W - side / 2)])
        start[axis] = rng.uniform(lo, hi)
        centres = np.repeat(start[None], n_frames, 0)
        centres[:, axis] += sign * travel * s
        sizes = np.full(n_frames, side)
    else:
        ratio = rng.uniform(0.8, 0.9)  # the zoomed window relative to the wide one
        a, b = (1.0, ratio) if motion == "zoom_in" else (ratio, 1.0)
        sizes = side * (a + (b - a) * s)
        centre = np.array([rng.uniform(side / 2, H - side / 2), rng.uniform(side / 2, W - side / 2)])
        centres = np.repeat(centre[None], n_frames, 0)
    return _sample_window(photo, centres, sizes, res, blur)


def _shapes_clip(rng: np.random.Generator, motion: str, res: int, n_frames: int, blur: float) -> np.ndarray:
    """1-2 soft-edged discs / squares over a two-colour gradient; drifting or bouncing off the walls."""
    yy, xx = np.meshgrid(np.arange(res) + 0.5, np.arange(res) + 0.5, indexing="ij")
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((xx * np.cos(angle) + yy * np.sin(angle)) / (res * np.sqrt(2)) + 0.5)[..., None]
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    background = (c0 * (1 - ramp) + c1 * ramp).astype(np.float32)
    frames = np.repeat(background[None], n_frames, 0)
    for _ in range(rng.integers(1, 3)):
        radius = res * rng.uniform(0.1, 0.18)
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        pos = rng.uniform(radius, res - radius, 2)
        speed = res * rng.uniform(0.01, 0.025 if motion == "shapes_drift" else 0.04)
        heading = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([np.sin(heading), np.cos(heading)])
        square = rng.random() < 0.5
        for k in range(n_frames):
            dy, dx = yy - pos[0], xx - pos[1]
            dist = np.maximum(abs(dy), abs(dx)) if square else np.hypot(dy, dx)
            alpha = np.clip((radius - dist) / blur + 0.5, 0, 1)[..., None]  # soft edge, `blur` pixels wide
            frames[k] = frames[k] * (1 - alpha) + colour * alpha
            pos = pos + vel
            if motion == "shapes_bounce":
                for d in range(2):
                    if not radius <= pos[d] <= res - radius:
                        vel[d] = -vel[d]
                        pos[d] = np.clip(pos[d], radius, res - radius)
    return frames


DEFAULT_BLUR = 3.0  # output pixels: photos keep coarse detail, which a tiny CPU-trained model can learn


def make_clip(seed: int, index: int, res: int = 128, n_frames: int = 16, blur: float = DEFAULT_BLUR) -> tuple[np.ndarray, int]:
    """Clip `index` of the set with `seed`: (uint8 (T, res, res, 3), label)."""
    label = index % len(MOTIONS)
    rng = np.random.default_rng([seed, index])
    motion = MOTIONS[label]
    make = _shapes_clip if motion.startswith("shapes") else _camera_clip
    frames = make(rng, motion, res, n_frames, blur * res / 128)
    return (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8), label


def _write_clip(job: tuple[Path, int, int, int, int, int]) -> Path:
    root, seed, index, res, n_frames, fps = job
    from ..runtime.video_io import save_video

    frames, label = make_clip(seed, index, res, n_frames)
    path = root / MOTIONS[label] / f"{index:05d}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_video(frames, path, fps=fps, quality="high")
    return path


def default_workers() -> int:
    """The CPUs this process may run on (what os.process_cpu_count gives from Python 3.13)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def write_synthetic(out: str | Path, n: int, seed: int = 0, res: int = 128, n_frames: int = 16, fps: int = 8,
                    progress=None, workers: int = 1) -> list[Path]:
    """Write n clips as H.264 .mp4 files in one folder per motion kind: out/<motion>/<index>.mp4.

    The set is written into a temporary folder beside `out` and renamed into place when complete, so an
    interrupted run leaves no half-written set that a later stage would take for a finished one. `out`
    may exist only if empty. With `workers` > 1 clips are made in that many processes (clip i depends on
    (seed, i) alone, so the files are the same)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, folder=NEW_FOLDER) as tmp:
        jobs = [(tmp, seed, i, res, n_frames, fps) for i in range(n)]
        if workers > 1 and n > 1:
            # forkserver: no fork of a parent that runs threads (rich's refresh, torch's pools)
            with ProcessPoolExecutor(min(workers, n), mp_context=multiprocessing.get_context("forkserver")) as pool:
                try:
                    written = list(_report(pool.map(_write_clip, jobs, chunksize=4), progress))
                except BaseException:
                    pool.shutdown(cancel_futures=True)  # an interrupted set stops now, not after every clip
                    raise
        else:
            written = list(_report(map(_write_clip, jobs), progress))
    return [out / p.relative_to(tmp) for p in written]


def _report(paths: Iterable[Path], progress) -> Iterator[Path]:
    for path in paths:
        if progress is not None:
            progress()
        yield path
