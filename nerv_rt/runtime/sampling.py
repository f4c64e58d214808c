"""The sampling loop over any backend's arrays (numpy or torch), and its seeded host-side inputs.

Everything random is drawn up front from the seed with numpy, so a seed gives the same video on
every backend; the loop itself is slicing and arithmetic only, so on CUDA it can be captured as
one graph (runtime/captured.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..diffusion import cfg_combine, make_sampler, sampler_step
from ..engines.base import Array, Backend, Engine


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


def prepare_inputs(seed: int, n: int, tokens: int, dim: int, num_classes: int, class_label: int | None,
                   steps: int, sampler: str, eta: float, guidance: float) -> SamplerInputs:
    rng = np.random.default_rng(seed)
    labels = (rng.integers(0, num_classes, n) if class_label is None else np.full(n, class_label)).astype(np.int64)
    x_T = rng.standard_normal((n, tokens, dim), dtype=np.float32)
    noise = rng.standard_normal((steps, n, tokens, dim), dtype=np.float32)
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
    timesteps: Array
    y: Array
    coeffs: Array
    x_in: Array  # (B, N, d) DiT input buffer, filled every step

    @classmethod
    def from_host(cls, backend: Backend, s: SamplerInputs) -> DeviceInputs:
        batch = s.y.shape[0]
        x_in = np.zeros((batch, *s.x_T.shape[1:]), np.float32)
        return cls(*(backend.asarray(a) for a in (s.x_T, s.noise, s.timesteps, s.y, s.coeffs, x_in)))


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
        eps = dit(x_t=d.x_in, t=d.timesteps[i], y=d.y)["eps"]
        if use_cfg:
            eps = cfg_combine(eps[:n], eps[n:], guidance)
        x = sampler_step(x, eps, d.noise[i], c_x[i], c_eps[i], c_noise[i])
        if progress is not None:
            progress(i + 1)
    return x
