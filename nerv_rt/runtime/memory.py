"""Up-front memory bounds: a request that cannot fit is refused before any work, in one line, instead of
being killed by the kernel's OOM killer half-way (torch-free; Linux reads /proc/meminfo)."""
from __future__ import annotations

import os

from ..errors import NervError
from ..models.presets import ModelConfig

GB = 2**30
BUDGET_SHARE = 0.5  # of the memory available now: room for the interpreter, libraries and the writer


def available_bytes() -> int:
    """Memory the system can give this process now (MemAvailable), or all of it where that is unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decoder_bytes_per_frame(cfg: ModelConfig) -> int:
    """fp32 activations of one decoded frame: every block's features are held until the side outputs
    combine (models/nerv.py), plus as much again for temporaries (conv outputs, GELU)."""
    sides = [cfg.decoder.grid * 2**i for i in range(len(cfg.decoder.widths))]
    floats = sum(w * s * s for w, s in zip(cfg.decoder.widths, sides)) + 3 * cfg.res * cfg.res * len(sides)
    return 2 * 4 * floats


def check_fits(need: int, what: str, fix: str) -> None:
    """Refuse `what` when it needs more than the budget; `fix` says what to ask for instead."""
    budget = int(BUDGET_SHARE * available_bytes())
    if need > budget:
        raise NervError(f"{what} needs about {need / GB:.1f} GB of memory, {budget / GB:.1f} GB is available to it; {fix}")


def max_chunk(cfg: ModelConfig) -> int:
    """The most frames one decoder call may render within the budget."""
    return max(1, int(BUDGET_SHARE * available_bytes()) // decoder_bytes_per_frame(cfg))
