"""Peak-memory probes: a fresh child process per case on CPU (peak RSS), allocator + driver on CUDA."""
from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from queue import Empty
from typing import Any

from .. import errors
from ..errors import ON_COMMAND_LINE, NervError


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


# Processes a child started in sessions of their own (a `nerv-rt serve`, a `pytest -m gpu`), by pid: out of its
# process group, so a time-out's kill of the group misses them. The child's SIGTERM handler passes SIGTERM on to
# them first (`nerv-rt serve` then takes its Ray cluster down), whatever the child is blocked in.
OWN_SESSIONS: set[int] = set()
TERMINATE_GRACE_S = 5.0  # after SIGTERM, before SIGKILL: the child's `finally` clauses run meanwhile


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    for pid in list(OWN_SESSIONS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    raise SystemExit(128 + signum)


def _child(fn: Callable[..., Any], imports: tuple[str, ...], kwargs: dict, queue, on_command_line: bool) -> None:
    os.setsid()  # a session of its own: a time-out stops it with its process group (and OWN_SESSIONS)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    ON_COMMAND_LINE.set(on_command_line)  # errors name --flags where the parent is the CLI
    try:
        for name in imports:  # library import cost is not the case's memory
            importlib.import_module(name)
        _reset_peak()
        base = _rss_kb("VmRSS")
        result = fn(**kwargs)
        queue.put(("ok", result, (_rss_kb("VmHWM") - base) * 1024))
    except NervError as e:  # a problem the user can fix: raised again in the parent, as its class with its line
        queue.put(("nerv_error", (type(e).__name__, str(e)), 0))
    except BaseException:  # report any other failure to the parent
        queue.put(("error", traceback.format_exc(), 0))


def run_in_child(fn: Callable[..., Any], imports: tuple[str, ...] = (), timeout: float | None = None,
                 **kwargs) -> tuple[Any, int]:
    """Run fn(**kwargs) in a fresh spawned process after importing `imports` there.

    Returns (fn's result, peak RSS bytes above the RSS after the imports): the memory of what fn
    built and ran (weights, inputs, activations), without the interpreter and libraries.
    `fn` must be a module-level function (it is pickled by reference). A NervError in the child is raised again
    as one (its message); another exception is a RuntimeError with the child's traceback. A child that dies (a crash in native
    code) is a RuntimeError, one still running after `timeout` seconds is stopped (SIGTERM to its process group and
    OWN_SESSIONS, then after TERMINATE_GRACE_S SIGKILL to the group): TimeoutError.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, imports, kwargs, queue, ON_COMMAND_LINE.get()))
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
                _stop_group(proc)
                raise TimeoutError(f"{fn.__name__} did not finish within {timeout:g} s") from None
    proc.join()
    if status == "nerv_error":
        name, message = result
        error_class = getattr(errors, name, None)
        raise (error_class if isinstance(error_class, type) and issubclass(error_class, NervError) else NervError)(message)
    if status != "ok":
        raise RuntimeError(f"benchmark child process failed:\n{result}")
    return result, peak


def _stop_group(proc: Any) -> None:
    """SIGTERM to the child's process group, SIGKILL to what is left of it after TERMINATE_GRACE_S."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:  # still starting: no group of its own yet
        proc.terminate()
    proc.join(TERMINATE_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.join()


class NvmlPeak:
    """Peak GPU memory while the block runs, sampled by NVML (nvidia-ml-py) from a background thread on the GPU that
    torch calls device 0: this process's usage as the driver charges it (CUDA context, torch, TensorRT, ONNX
    Runtime), also above its level at the start, and the device's used memory above its level at the start. Where
    NVML is missing, refuses, or does not list this process (another pid namespace), those figures are absent,
    never zeros."""

    def __init__(self, period_s: float = 0.002):
        self.period_s = period_s
        self.peaks: dict[str, int] = {}
        self._stop = None

    def __enter__(self) -> NvmlPeak:
        import os
        import threading

        try:
            import pynvml

            pynvml.nvmlInit()
            handle = _nvml_handle(pynvml)
            pid = os.getpid()
            mine = lambda: sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)  # noqa: E731
                               if p.pid == pid) or None
            base_device, base_process = pynvml.nvmlDeviceGetMemoryInfo(handle).used, mine()
        except Exception:  # no NVML, no permission (MIG, containers): no figures
            return self
        self._stop = threading.Event()

        def sample() -> None:
            try:
                while True:
                    last = self._stop.is_set()  # a last sample after the block: what it holds at its end counts
                    used = {"device": pynvml.nvmlDeviceGetMemoryInfo(handle).used - base_device}
                    process = mine()
                    if process is not None:
                        used["process"] = process
                        if base_process is not None:
                            used["process_delta"] = process - base_process
                    for k, v in used.items():
                        self.peaks[k] = max(self.peaks.get(k, 0), v)
                    if last:
                        return
                    self._stop.wait(self.period_s)
            except Exception:  # NVML failed mid-way: what it gave so far is not a peak
                self.peaks.clear()

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
        names = {"process": "nvml_process_peak_mb", "process_delta": "nvml_process_delta_peak_mb",
                 "device": "nvml_device_delta_peak_mb"}
        return {names[k]: v / 2**20 for k, v in self.peaks.items()}


def _nvml_handle(pynvml):
    """NVML's handle of the GPU torch calls device 0 (CUDA_VISIBLE_DEVICES may renumber), by UUID where torch
    reports it, else NVML's index 0."""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(0).uuid)
        return pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    except Exception:
        return pynvml.nvmlDeviceGetHandleByIndex(0)
