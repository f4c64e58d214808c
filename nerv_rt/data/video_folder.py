"""Any folder of videos as clips of T frames at res x res in [-1, 1].

Labels come from the first folder level (UCF-101 layout: <root>/<Class>/<video>.avi); a folder of
videos without class folders is one class. Clip positions are chosen by the caller (the training loop's
seeded generator), so that data-parallel ranks agree on one global batch. Decoded videos are kept in memory
while they fit in half of what is available (shared by torchrun's processes), else each clip is decoded from its
file when drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import NervError, warn
from ..runtime.memory import GB, available_bytes
from ..runtime.video_io import list_videos, probe_video, read_video
from ..train.common import world_size


class VideoFolder:
    def __init__(self, root: str | Path, frames: int, res: int, cache: bool = True):
        root = Path(root)
        paths = list_videos(root)
        self.root, self.frames, self.res = root, frames, res
        self.paths = paths
        self.classes = sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})
        loose = [p for p in paths if len(p.relative_to(root).parts) == 1]
        if self.classes and loose:
            raise NervError(f"{loose[0]}: a video beside the class folders of {root} ({len(loose)} in all) has no class; "
                            "move it into one")
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index.get(p.relative_to(root).parts[0], 0) for p in paths]
        probes = [probe_video(p) for p in paths]  # also catches unreadable files up front
        self.lengths = [n for n, _ in probes]
        for p, n in zip(paths, self.lengths):
            if n < frames:
                raise NervError(f"{p}: {n} frames, but the model's clips are {frames} frames long")
        self._rates = [(r, p) for (_, r), p in zip(probes, paths) if r is not None]  # the rates videos declare
        decoded = sum(self.lengths) * res * res * 3
        if cache and decoded > available_bytes() // (2 * world_size()):  # under torchrun each process keeps a copy
            size = f"{decoded / GB:.1f} GB" if decoded >= GB else f"{decoded / 2**20:.0f} MB"
            warn(f"{root}: its videos decoded would take about {size} of memory; each clip is decoded from "
                 "its file instead (slower)")
            cache = False
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    @property
    def fps(self) -> float:
        """The rate generated clips of `frames` frames play at (ModelConfig.fps, set by `train vae`): the first
        declared one; a warning when the videos' rates differ by more than 1 %."""
        if not self._rates:
            raise NervError(f"{self.root}: no video declares a frame rate")
        (slow, slow_path), (fast, fast_path) = min(self._rates), max(self._rates)
        if fast > 1.01 * slow:
            warn(f"{self.root}: its videos' frame rates differ ({slow:g} fps, {slow_path.name}, to {fast:g} "
                 f"fps, {fast_path.name}): a clip is {self.frames} consecutive frames whatever its rate, so "
                 f"clips span different times; generated clips play at {self._rates[0][0]:g} fps, the first "
                 "video's")
        return self._rates[0][0]

    @property
    def num_classes(self) -> int:
        return max(1, len(self.classes))

    def __len__(self) -> int:
        return len(self.paths)

    def _frames(self, i: int, start: int) -> np.ndarray:
        if self._cache is None:
            return read_video(self.paths[i], start, self.frames, self.res)
        if i not in self._cache:
            self._cache[i] = read_video(self.paths[i], 0, None, self.res)
        return self._cache[i][start:start + self.frames]

    def clip(self, i: int, start_fraction: float) -> torch.Tensor:
        """Clip of video i starting at start_fraction (in [0, 1)) of its valid start range.

        Returns float (T, 3, res, res) in [-1, 1]."""
        start = int(start_fraction * (self.lengths[i] - self.frames + 1))
        frames = self._frames(i, start)
        if len(frames) < self.frames:
            raise NervError(f"{self.paths[i]}: decoded {len(frames)} frames from {start}, clips need {self.frames}")
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def batch(self, indices, start_fractions) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack clips: (B, T, 3, res, res) and labels (B,)."""
        videos = torch.stack([self.clip(int(i), float(s)) for i, s in zip(indices, start_fractions)])
        return videos, torch.tensor([self.labels[int(i)] for i in indices])
