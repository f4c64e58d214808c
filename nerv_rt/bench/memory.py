"""Peak-memory probes: a fresh child process per case on CPU (peak RSS), allocator + driver on CUDA."""
from __future__ import annotations

import importlib
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable
from queue import Empty
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


def run_in_child(fn: Callable[..., Any], imports: tuple[str, ...] = (), timeout: float | None = None,
                 **kwargs) -> tuple[Any, int]:
    """Run fn(**kwargs) in a fresh spawned process after importing `imports` there.

    Returns (fn's result, peak RSS bytes above the RSS after the imports): the memory of what fn
    built and ran (weights, inputs, activations), without the interpreter and libraries.
    `fn` must be a module-level function (it is pickled by reference). A child that dies (a crash in native
    code) is a RuntimeError, one still running after `timeout` seconds is killed: TimeoutError.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, imports, kwargs, queue))
    proc.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            status, result, peak = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"benchmark child process died (exit code {proc.exitcode})") from None
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                proc.join()
                raise TimeoutError(f"{fn.__name__} did not finish within {timeout:g} s") from None
    proc.join()
    if status != "ok":
        raise RuntimeError(f"benchmark child process failed:\n{result}")
    return result, peak


class NvmlPeak:
    """Peak GPU memory while the block runs, sampled by NVML (nvidia-ml-py) from a background thread: this
    process's own usage (what the driver charges it: the CUDA context, torch, TensorRT, ONNX Runtime) and the
    device's used memory above its level at the start. Without NVML the figures are absent, not guessed."""

    def __init__(self, period_s: float = 0.002):
        self.period_s, self.process_peak, self.device_peak, self.baseline = period_s, 0, 0, 0
        self._stop = None

    def __enter__(self) -> NvmlPeak:
        import os
        import threading

        try:
            import pynvml
        except ImportError:
            return self
        pynvml.nvmlInit()
        handle, pid = pynvml.nvmlDeviceGetHandleByIndex(0), os.getpid()
        self.baseline = pynvml.nvmlDeviceGetMemoryInfo(handle).used
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                mine = [p.usedGpuMemory or 0 for p in procs if p.pid == pid]  # absent in a foreign pid namespace
                self.process_peak = max(self.process_peak, sum(mine))
                self.device_peak = max(self.device_peak, pynvml.nvmlDeviceGetMemoryInfo(handle).used - self.baseline)
                self._stop.wait(self.period_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            import pynvml

            self._stop.set()
            self._thread.join()
            pynvml.nvmlShutdown()

    def result(self) -> dict[str, float]:
        if self._stop is None:
            return {}
        out = {"nvml_device_delta_peak_mb": self.device_peak / 2**20}
        if self.process_peak:
            out["nvml_process_peak_mb"] = self.process_peak / 2**20
        return out
