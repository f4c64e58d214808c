"""Frame times and pixel conversion (numpy only)."""
from __future__ import annotations

import numpy as np


def frame_times(n_frames: int) -> np.ndarray:
    """Evenly spaced decoder query times in [0, 1] for a clip of n_frames (float32).

    Training clips of T frames see t = k / (T - 1); asking for more frames interpolates between them.
    """
    if n_frames == 1:
        return np.zeros(1, np.float32)
    return np.linspace(0.0, 1.0, n_frames, dtype=np.float32)


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Decoder output (F, 3, H, W) in about [-1, 1] -> uint8 (F, H, W, 3)."""
    x = np.clip((np.asarray(frames, np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return x.transpose(0, 2, 3, 1)
