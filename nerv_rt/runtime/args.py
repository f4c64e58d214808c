"""Type checks of the runtime's arguments: a wrong type is one NervError naming the parameter (errors.option),
not a TypeError from deep inside numpy or an engine."""
from __future__ import annotations

import numbers
import os

import numpy as np

from ..errors import NervError, option


def check_ints(**values: object) -> None:
    """Counts, indices and seeds are whole numbers (numpy's too), never floats or bools."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise NervError(f"{option(name)} must be a whole number, got {v!r}")


def check_paths(**values: object) -> None:
    """Files and folders are given as str or os.PathLike (pathlib.Path), never None or numbers."""
    for name, v in values.items():
        if not isinstance(v, (str, os.PathLike)):
            raise NervError(f"{option(name)} must be a path (str or pathlib.Path), got {v!r:.80}")


def check_callable(**values: object) -> None:
    """Callbacks are callables or None."""
    for name, v in values.items():
        if v is not None and not callable(v):
            raise NervError(f"{option(name)} must be a function or None, got {v!r:.80}")


def check_numbers(**values: object) -> None:
    """Rates and weights are real numbers (numpy's and Fractions too), never strings, None or bools."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise NervError(f"{option(name)} must be a number, got {v!r}")
