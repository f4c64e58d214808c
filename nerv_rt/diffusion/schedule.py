"""Noise schedule (DDPM, Ho et al. 2020): pure numpy functions, float64 for the tables."""
from __future__ import annotations

import numpy as np

NUM_TIMESTEPS = 1000


def linear_betas(num_timesteps: int = NUM_TIMESTEPS, start: float = 1e-4, end: float = 0.02) -> np.ndarray:
    """beta_t, linear from `start` to `end` (the DDPM / DiT schedule)."""
    return np.linspace(start, end, num_timesteps, dtype=np.float64)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """alpha-bar_t = prod_{s<=t} (1 - beta_s)."""
    return np.cumprod(1.0 - betas)


def snr(abar: np.ndarray) -> np.ndarray:
    return abar / (1.0 - abar)


def min_snr_weights(abar: np.ndarray, gamma: float = 5.0) -> np.ndarray:
    """Min-SNR-gamma loss weights for eps-prediction (Hang et al. 2023): min(SNR_t, gamma) / SNR_t."""
    s = snr(abar)
    return np.minimum(s, gamma) / s


def q_sample(x0, t, noise, abar):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for a batch of timesteps t (B,).

    Works for numpy arrays and torch tensors alike (abar must be the same kind as x0).
    """
    a = abar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise
