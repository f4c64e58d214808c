"""The training precisions (`train ... --precision`); torch-free, so the CLI checks the option before torch loads."""
from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
