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


def min_snr_weights(abar: np.ndarray, gamma: float = 5.0, prediction: str = "eps") -> np.ndarray:
    """Weights of the per-timestep eps MSE (the DiT returns eps whatever it predicts).

    eps: Min-SNR-gamma (Hang et al. 2023), min(SNR_t, gamma) / SNR_t.
    v: the v MSE weighted min(SNR_t + 1, gamma) / (SNR_t + 1), so the high-noise steps that lay out a sample
       keep full weight. Since eps_hat - eps = sqrt(abar_t) (v_hat - v), that is the eps MSE times this / abar_t.
    """
    s = snr(abar)
    if prediction == "eps":
        return np.minimum(s, gamma) / s
    if prediction == "v":
        return np.minimum(s + 1, gamma) / (s + 1) / abar
    raise ValueError(f"unknown prediction {prediction!r}; expected eps or v")


def q_sample(x0, t, noise, abar):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for a batch of timesteps t (B,).

    Works for numpy arrays and torch tensors alike (abar must be the same kind as x0).
    """
    a = abar[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise
