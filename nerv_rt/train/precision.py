"""Checks of the training configs (`train ... --precision` and the fields every stage shares); torch-free, so the
CLI checks its options before torch loads."""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def check_run_config(cfg: object) -> None:
    """ValueError on a stage config's shared fields that no run can use (the CLI refuses them as options first):
    counts below 1, negative learning rates, an EMA decay outside [0, 1)."""
    for name in ("steps", "batch", "ckpt_every", "clips_per_video"):
        if getattr(cfg, name, 1) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("lr", "token_lr", "encoder_lr"):
        if getattr(cfg, name, 0.0) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not 0 <= getattr(cfg, "ema", 0.0) < 1:
        raise ValueError(f"ema must be in [0, 1), got {cfg.ema}")
