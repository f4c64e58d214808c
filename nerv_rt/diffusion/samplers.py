"""DDPM ancestral and DDIM samplers as precomputed linear-combination tables.

Without x0 clipping (weight tokens are unbounded Gaussians), both samplers' updates are linear
in (x_t, eps, z):  x_prev = c_x[i] * x_t + c_eps[i] * eps + c_noise[i] * z_i.
So a sampler is three coefficient vectors plus the timesteps it visits, computed once on the host;
a step allocates nothing and has no data-dependent branch, which makes the loop graph-capturable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schedule import NUM_TIMESTEPS, alphas_cumprod, linear_betas

SAMPLERS = ("ddim", "ddpm")


@dataclass(frozen=True)
class SamplerTable:
    timesteps: np.ndarray  # (S,) the model timesteps visited, descending
    c_x: np.ndarray  # (S,) float32
    c_eps: np.ndarray  # (S,)
    c_noise: np.ndarray  # (S,)

    @property
    def steps(self) -> int:
        return len(self.timesteps)


def spaced_timesteps(steps: int, num_timesteps: int = NUM_TIMESTEPS) -> np.ndarray:
    """`steps` evenly spaced timesteps from T-1 down to 0, both ends included (DiT's respacing;
    diffusers' timestep_spacing="linspace")."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in 1..{num_timesteps}, got {steps}")
    return np.round(np.linspace(num_timesteps - 1, 0, steps)).astype(np.int64)


def make_sampler(kind: str, steps: int, eta: float = 0.0, abar: np.ndarray | None = None,
                 timesteps: np.ndarray | None = None) -> SamplerTable:
    """Coefficient table for `kind` in SAMPLERS over `steps` respaced timesteps (or the descending
    `timesteps` given).

    ddim (Song et al. 2021, eq. 12), with a_t = abar_t, a_p = abar_prev:
        x0  = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
        x_p = sqrt(a_p) x0 + sqrt(1 - a_p - sigma^2) eps + sigma z,
        sigma = eta * sqrt((1 - a_p) / (1 - a_t)) * sqrt(1 - a_t / a_p)
    ddpm (Ho et al. 2020, eq. 11) on the respaced chain, beta'_t = 1 - a_t / a_p:
        x_p = (x_t - beta'_t / sqrt(1 - a_t) eps) / sqrt(1 - beta'_t) + sqrt(beta~_t) z,
        beta~_t = (1 - a_p) / (1 - a_t) * beta'_t  (fixed small posterior variance)
    """
    if kind not in SAMPLERS:
        raise ValueError(f"unknown sampler {kind!r}; choose from {', '.join(SAMPLERS)}")
    abar = alphas_cumprod(linear_betas()) if abar is None else abar
    ts = spaced_timesteps(steps, len(abar)) if timesteps is None else np.asarray(timesteps, np.int64)
    a_t = abar[ts]
    a_p = np.append(abar[ts[1:]], 1.0)  # after the last step: the clean sample
    if kind == "ddim":
        sigma = eta * np.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
        c_x = np.sqrt(a_p / a_t)
        c_eps = np.sqrt(np.maximum(1 - a_p - sigma**2, 0.0)) - np.sqrt(a_p * (1 - a_t) / a_t)
        c_noise = sigma
    else:
        beta = 1 - a_t / a_p
        c_x = 1 / np.sqrt(1 - beta)
        c_eps = -beta / np.sqrt(1 - a_t) / np.sqrt(1 - beta)
        c_noise = np.sqrt((1 - a_p) / (1 - a_t) * beta)
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return SamplerTable(ts, f32(c_x), f32(c_eps), f32(c_noise))


def sampler_step(x, eps, noise, c_x, c_eps, c_noise):
    """One update x_t -> x_prev (see module docstring); numpy or torch, scalars or 0-d tensors."""
    return c_x * x + c_eps * eps + c_noise * noise


def cfg_combine(eps_cond, eps_uncond, guidance: float):
    """Classifier-free guidance (Ho & Salimans 2022): eps_u + g (eps_c - eps_u)."""
    return eps_uncond + guidance * (eps_cond - eps_uncond)
