"""Checks of the training configs (`train ... --precision` and the fields every stage shares); torch-free, so the
CLI checks its options before torch loads."""
from __future__ import annotations

import math

from ..errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_run_config(cfg: object) -> None:
    """ConfigError (a NervError and a ValueError) on a stage config's shared fields that no run can use (the CLI
    refuses them as options first): counts below 1, negative seeds, negative or non-finite learning rates and loss
    weights, fractions outside [0, 1], an EMA decay outside [0, 1)."""
    for name, least in (("steps", 1), ("batch", 1), ("ckpt_every", 1), ("clips_per_video", 1), ("seed", 0)):
        v = getattr(cfg, name, least)
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"{name} must be a whole number >= {least}, got {v!r}")
    for name in ("lr", "token_lr", "encoder_lr", "kl_weight", "perceptual_weight", "gan_weight", "temporal_weight",
                 "encoder_weight", "token_noise"):
        v = getattr(cfg, name, 0.0)
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
    for name in ("gan_start", "scheduled_sampling"):  # fractions
        if not 0 <= getattr(cfg, name, 0.0) <= 1:  # NaN fails too
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if not 0 <= getattr(cfg, "ema", 0.0) < 1:  # NaN fails too
        raise ConfigError(f"ema must be in [0, 1), got {cfg.ema}")
