"""What machine this is, for cache keys (compiled engines and packages are only valid where they were built)
and for benchmark reports. Torch-free unless a GPU is asked about."""
from __future__ import annotations

import os
import platform
import sys

from .errors import NervError


def nvidia_driver() -> bool:
    """Whether an NVIDIA driver may be present: on Linux its /proc entry (or WSL's GPU device); elsewhere unknown,
    so True. Asked before importing torch, which costs a second and 200 MB where there can be no CUDA GPU."""
    if sys.platform != "linux":
        return True
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/dxg")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of device 0, from torch or cuda-python."""
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            return p.name, f"{p.major}.{p.minor}"
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise NervError("cannot query the GPU: install torch with CUDA or cuda-python") from None
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise NervError(f"no CUDA GPU available (cudaGetDeviceProperties error {int(err)})")
    return props.name.decode().rstrip("\x00"), f"{props.major}.{props.minor}"
