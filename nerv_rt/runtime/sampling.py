"""The sampling loop over any backend's arrays (numpy or torch), and its seeded host-side inputs.

Everything random about a video is drawn up front from its own stream, numpy's generator seeded with
(seed, index): video `index` of `seed` is the same video whatever else shares its sampling run (other
seeds, other batch sizes, a server's batching of requests) and on every backend. The loop itself is
slicing and arithmetic only, so on CUDA it can be captured as one graph (runtime/captured.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..diffusion import cfg_combine, make_sampler, sampler_step
from ..engines.base import Array, Backend, Engine

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class VideoDraw:
    """Which video to sample: index `index` of `seed`, of class `label` (an index or a class name, as `generate`'s
    class_label; None: drawn from the stream)."""
    seed: int
    index: int = 0
    label: int | str | None = None


@dataclass(frozen=True)
class SamplerInputs:
    """Host-side inputs of one sampling run (all float32 unless noted)."""
    x_T: np.ndarray  # (n, N, d) initial noise
    noise: np.ndarray  # (S, n, N, d) ancestral noise per step (unused by DDIM eta=0)
    labels: np.ndarray  # (n,) int64 class labels
    timesteps: np.ndarray  # (S, B) model timestep per step, B = 2n with CFG else n
    y: np.ndarray  # (B,) int64 labels fed to the DiT: [labels ; null class] with CFG
    coeffs: np.ndarray  # (3, S) c_x, c_eps, c_noise
    guidance: float


def _stream(v: VideoDraw) -> np.random.Generator:
    return np.random.default_rng([v.seed, v.index])


def video_label(v: VideoDraw, num_classes: int) -> int:
    """The class video `v` is sampled in: its own, or its stream's first draw."""
    return v.label if v.label is not None else int(_stream(v).integers(0, num_classes))


def draw_video(v: VideoDraw, tokens: int, dim: int, num_classes: int, steps: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(label, x_T (N, d), noise (S, N, d)) of one video from its own stream. The label is always drawn
    first (video_label), so naming a class keeps the video's noise: the same seed in two classes differs by
    class only."""
    rng = _stream(v)
    drawn = int(rng.integers(0, num_classes))
    x_T = rng.standard_normal((tokens, dim), dtype=np.float32)
    noise = rng.standard_normal((steps, tokens, dim), dtype=np.float32)
    return (drawn if v.label is None else v.label), x_T, noise


def prepare_inputs(videos: Sequence[VideoDraw], tokens: int, dim: int, num_classes: int, steps: int, sampler: str,
                   eta: float, guidance: float) -> SamplerInputs:
    draws = [draw_video(v, tokens, dim, num_classes, steps) for v in videos]
    labels = np.array([d[0] for d in draws], np.int64)
    x_T = np.stack([d[1] for d in draws])
    noise = np.stack([d[2] for d in draws], axis=1)  # (S, n, N, d)
    n = len(videos)
    table = make_sampler(sampler, steps, eta)
    use_cfg = guidance != 1.0
    batch = 2 * n if use_cfg else n
    y = np.concatenate([labels, np.full(n, num_classes, np.int64)]) if use_cfg else labels
    timesteps = np.repeat(table.timesteps.astype(np.float32)[:, None], batch, axis=1)
    coeffs = np.stack([table.c_x, table.c_eps, table.c_noise])
    return SamplerInputs(x_T, noise, labels, timesteps, y, coeffs, guidance)


@dataclass
class DeviceInputs:
    """SamplerInputs moved to a backend (the static buffers of a captured loop)."""
    x_T: Array
    noise: Array
    timesteps: Array  # (S, B): the table the loop reads
    y: Array
    coeffs: Array
    x_in: Array  # (B, N, d) DiT input buffer, filled every step
    t_in: Array  # (B,) DiT timestep buffer, filled every step: an engine binds one fixed, aligned address

    @classmethod
    def from_host(cls, backend: Backend, s: SamplerInputs) -> DeviceInputs:
        batch = s.y.shape[0]
        x_in = np.zeros((batch, *s.x_T.shape[1:]), np.float32)
        t_in = np.zeros(batch, np.float32)
        return cls(*(backend.asarray(a) for a in (s.x_T, s.noise, s.timesteps, s.y, s.coeffs, x_in, t_in)))


def denoise(dit: Engine, d: DeviceInputs, guidance: float, progress: Callable[[int], None] | None = None) -> Array:
    """Run every sampler step from x_T; returns x_0 in normalized token space, (n, N, d)."""
    x = d.x_T
    n = x.shape[0]
    use_cfg = d.x_in.shape[0] == 2 * n
    c_x, c_eps, c_noise = d.coeffs[0], d.coeffs[1], d.coeffs[2]
    for i in range(d.timesteps.shape[0]):
        d.x_in[:n] = x
        if use_cfg:
            d.x_in[n:] = x
        d.t_in[:] = d.timesteps[i]  # a copy into the static buffer, not a view into row i of the table
        eps = dit(x_t=d.x_in, t=d.t_in, y=d.y)["eps"]
        if use_cfg:
            eps = cfg_combine(eps[:n], eps[n:], guidance)
        x = sampler_step(x, eps, d.noise[i], c_x[i], c_eps[i], c_noise[i])
        if progress is not None:
            progress(i + 1)
    return x
