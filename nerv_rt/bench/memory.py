"""Peak-memory probes: a fresh child process per case on CPU (peak RSS), allocator + driver on CUDA."""
from __future__ import annotations

import importlib
import multiprocessing as mp
import traceback
from collections.abc import Callable
from typing import Any


def _rss_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: now, VmHWM: the peak so far)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak counts only what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _child(fn: Callable[..., Any], imports: tuple[str, ...], kwargs: dict, queue) -> None:
    try:
        for name in imports:  # library import cost is not the case's memory
            importlib.import_module(name)
        _reset_peak()
        base = _rss_kb("VmRSS")
        result = fn(**kwargs)
        queue.put(("ok", result, (_rss_kb("VmHWM") - base) * 1024))
    except BaseException:  # report any failure to the parent
        queue.put(("error", traceback.format_exc(), 0))


def run_in_child(fn: Callable[..., Any], imports: tuple[str, ...] = (), **kwargs) -> tuple[Any, int]:
    """Run fn(**kwargs) in a fresh spawned process after importing `imports` there.

    Returns (fn's result, peak RSS bytes above the RSS after the imports): the memory of what fn
    built and ran (weights, inputs, activations), without the interpreter and libraries.
    `fn` must be a module-level function (it is pickled by reference).
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, imports, kwargs, queue))
    proc.start()
    status, result, peak = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child process failed:\n{result}")
    return result, peak
