"""Clip metrics in numpy (the torch-free install evaluates with them): PSNR, SSIM, motion, camera motion, Frechet
distance.

Clips are uint8 [T, H, W, 3]."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def psnr(real: np.ndarray, fake: np.ndarray) -> float:
    """PSNR in dB over the whole clip (peak 255)."""
    mse = np.mean((real.astype(np.float64) - fake.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _gaussian_filter_valid(x: np.ndarray, window: int, sigma: float) -> np.ndarray:
    """Separable Gaussian filter over axes 1, 2 of (T, H, W, C), 'valid' borders (no padding)."""
    k = np.arange(window) - (window - 1) / 2
    g = np.exp(-(k**2) / (2 * sigma**2))
    g /= g.sum()
    x = sliding_window_view(x, window, axis=1) @ g  # (T, H', W, C)
    return sliding_window_view(x, window, axis=2) @ g  # (T, H', W', C)


def ssim(real: np.ndarray, fake: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over frames (Wang et al. 2004, Gaussian 11x11, sigma 1.5, on [0, 1] values, per channel);
    the same figure as nerv_rt.metrics.ssim, the differentiable torch version training uses."""
    a, b = real.astype(np.float64) / 255.0, fake.astype(np.float64) / 255.0
    c1, c2 = 0.01**2, 0.03**2
    f = lambda x: _gaussian_filter_valid(x, window, sigma)  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def motion(clip: np.ndarray) -> float:
    """Temporal change of a clip: mean |last frame - first frame| in uint8 levels (/255). A still scores 0;
    on the synthetic set held-out real clips score about 17.6 (bench/results/cpu-default-eval/gen128.json)."""
    return float(np.abs(clip[-1].astype(np.float32) - clip[0].astype(np.float32)).mean())


def camera_motion(clip: np.ndarray, sigma: float = 1.5) -> dict[str, float]:
    """How much of a clip's frame-to-frame change is a camera move. A global similarity motion (shift, scale and
    rotation about the centre) plus a uniform brightness change is fitted to each pair of consecutive frames by
    least squares on brightness constancy (Lucas-Kanade over the whole frame, grey frames blurred by `sigma` px).
    Returns the net shift (px a frame: the mean shift vector's length), the border motion (px a frame the mean
    scale moves a point on the frame's edge; > 0 zooms in) and the share of the clip's change the fits explain (R^2
    pooled over the pairs: over 0.99 for the synthetic set's pans and zooms, 0 for unrelated frames or a still)."""
    window = 2 * int(np.ceil(3 * sigma)) + 1
    grey = _gaussian_filter_valid(clip.astype(np.float64).mean(-1, keepdims=True), window, sigma)[..., 0]
    h, w = grey.shape[1:]  # the blur keeps the centre: it trims (window - 1) / 2 px from every side
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    params, residual, total = [], 0.0, 0.0
    for a, b in zip(grey[:-1], grey[1:]):
        gy, gx = np.gradient((a + b) / 2)
        change = (b - a).ravel()
        basis = np.stack([gx, gy, gx * xx + gy * yy, gy * xx - gx * yy, np.ones_like(gx)], axis=-1).reshape(-1, 5)
        p = np.linalg.lstsq(basis, -change, rcond=None)[0]
        params.append(p)
        residual += float(np.sum((change + basis @ p) ** 2))
        total += float(np.sum(change**2))
    tx, ty, scale = np.mean(params, axis=0)[:3]
    return {"shift": float(np.hypot(tx, ty)), "border": float(scale * (clip.shape[2] - 1) / 2),
            "explained": 1 - residual / total if total > 0 else 0.0}


def confusion_matrix(want: np.ndarray, pred: np.ndarray, classes: int) -> np.ndarray:
    """Counts [classes, classes] of integer labels: rows the wanted class, columns the predicted one."""
    return np.bincount(want * classes + pred, minlength=classes**2).reshape(classes, classes)


def motion_ratio(made: list[np.ndarray], real: list[np.ndarray]) -> float:
    """Mean motion of made (generated or reconstructed) clips over the mean motion of real clips."""
    return float(np.mean([motion(c) for c in made]) / max(np.mean([motion(c) for c in real]), 1e-9))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to feature sets a, b [n, D] (the FID / FVD formula):
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), with tr((S_a S_b)^1/2) = tr((S_a^1/2 S_b S_a^1/2)^1/2)
    from symmetric eigendecompositions (no complex sqrtm)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root_a = _sqrt_psd(cov_a)
    cross = np.trace(_sqrt_psd(root_a @ cov_b @ root_a))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
