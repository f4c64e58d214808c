"""What both trainers share: devices, DDP setup and sharding, seeded global draws, EMA, CSV log, progress."""
from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import NervError, setting, warn
from ..formats import atomic_write_text


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NervError("--device cuda: no CUDA GPU is available")
    return torch.device(name)


@dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) data-parallel run."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's equal slice of a global batch drawn identically on every rank."""
        per = x.shape[0] // self.world
        return x[self.rank * per:(self.rank + 1) * per]


def world_size() -> int:
    """Processes of this run: torchrun's WORLD_SIZE, 1 when not launched by torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def require_single_process(command: str, why: str = "") -> None:
    """Refuse a torchrun launch of a stage that runs in one process."""
    if world_size() > 1:
        raise NervError(f"{command} runs in one process{f' ({why})' if why else ''}; run it without torchrun")


def setup(device: str, batch: int) -> Dist:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = world_size()
    if world == 1:
        return Dist(device=pick_device(device))
    if batch % world:
        raise NervError(f"--batch {batch} must be divisible by the {world} processes")
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return Dist(rank=rank, world=world, device=dev)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    if d.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


# What each stage's checkpoint records as its train_state["kind"], and how an error names such a run
RUNS = {"vae": "a `train vae` run", "dit": "a `train dit` run", "autodecode": "an autodecode run",
        "encoder": "an encoder-stage run"}


def check_run_kind(train_state: dict, path: Path, kind: str) -> None:
    """`--resume` continues a run of the same stage (`kind`, one of RUNS)."""
    if train_state.get("kind") != kind:
        raise NervError(f"--resume: {path} is not {RUNS[kind]}; give that run's checkpoint as --out")


DATA_ORDER = ("seed", "batch", "frames_per_step", "clips_per_video")  # the config fields that fix a run's draws


def resume_state(train_state: dict, path: Path, kind: str, keys: tuple[str, ...], cfg: Any) -> dict:
    """The train state `--resume` needs, refused in one line when the checkpoint is another stage's run (`kind`),
    or lacks it: slimmed checkpoints (scripts/gpu_train.sh's, packaged models) keep the weights but not the
    optimizers; or when it is past `cfg.steps` (a finished run at `steps` returns at once). Warns when the saved run
    trained at another precision than the resumed one will (runs from before the option: auto), and when the
    settings that fix the data order differ (the draws from here are then not the saved run's)."""
    check_run_kind(train_state, path, kind)
    missing = [k for k in keys if k not in train_state]
    if missing:
        raise NervError(f"--resume: {path} holds no {', '.join(missing)} (a slimmed checkpoint); "
                        "start a new run from its weights instead")
    if int(train_state["step"]) > cfg.steps:
        raise NervError(f"--resume: {path} holds step {train_state['step']}, past --steps {cfg.steps}; give --steps "
                        f"{train_state['step']} or more")
    if dist.is_initialized() and dist.get_rank() != 0:  # under torchrun, rank 0 alone says what changed
        return train_state
    saved_config = train_state.get("train_config", {})
    saved = saved_config.get("precision", "auto")
    if saved != cfg.precision:
        warn(f"--resume: {path} was trained with --precision {saved}; it goes on with {cfg.precision}")
    changed = [k for k in DATA_ORDER if k in saved_config and hasattr(cfg, k) and saved_config[k] != getattr(cfg, k)]
    if changed:
        was, now = (", ".join(setting(k, c[k]) for k in changed) for c in (saved_config, vars(cfg)))
        warn(f"--resume: {path} was trained with {was}; it goes on with {now}, so its draws from here are not the "
             "saved run's")
    return train_state


def stop_if_diverged(value: torch.Tensor, step: int, command: str, out: Path, what: str = "loss",
                     fix: str = "a smaller --lr") -> None:
    """End a run whose loss (or gradient norm: `what`) turned NaN or infinite (a diverged run, e.g. too large a
    --lr) in one line, before the optimizer applies it, so the checkpoint last written stays the last good one.
    Under DDP every rank stops together (a rank that stopped alone would leave the others waiting in their next
    all-reduce)."""
    diverged = (~torch.isfinite(value.detach())).float()
    if dist.is_initialized():
        dist.all_reduce(diverged)
    if diverged.item():
        number = value.item()
        which = f"the {what} is {number}" if not math.isfinite(number) else f"another process's {what} is not finite"
        kept = f"{out} holds the last checkpoint written" if out.exists() else "no checkpoint was written"
        raise NervError(f"{command}: {which} at step {step + 1}, so the run diverged ({fix} may help); {kept}")


def clip_gradients(parameters, step: int, command: str, out: Path, what: str = "gradient norm",
                   fix: str = "a smaller --lr") -> None:
    """Clip the gradients' norm to 1, and stop a run whose norm is NaN or infinite (stop_if_diverged) before its
    optimizer steps: clipping an infinite norm would write NaN weights."""
    stop_if_diverged(torch.nn.utils.clip_grad_norm_(parameters, 1.0), step, command, out, what, fix)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's global draws: the same on every rank, and on resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def autocast(device: torch.device, precision: str):
    """A training step's compute precision (precision.PRECISIONS). bf16: bf16 autocast (weights and optimizer state
    stay fp32); fp32: full precision; auto: bf16 on CUDA, fp32 on the CPU. On the AVX512-BF16 development CPU bf16 ran
    the tiny model's steps 1.4-2.0x faster (docs/default-model.md, "bf16 on the CPU")."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)


def lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(progress * torch.pi)).item()))


class CsvLog:
    """Append-only CSV of training scalars; one row per logged step (rank 0 only). A new run's log (`start` 0) is
    started, an old file of that name replaced, with its first row, so a run that fails before its first step
    leaves none. A resumed run (`start`: the step its checkpoint holds) drops the rows logged after that step,
    which it trains again, and goes on counting time from the last row kept."""

    def __init__(self, path: Path | None, fields: list[str], start: int = 0):
        self.path, self.fields = path, ["step", "time_s", *fields]
        self.t0 = time.time()
        self._new = path is not None and (start == 0 or not path.exists())
        if path is not None and not self._new:
            rows = path.read_text().splitlines()
            if not rows or rows[0].split(",") != self.fields:  # not this stage's log: start a new one
                self._new = True
                return
            kept = rows[:1] + [r for r in rows[1:] if _logged_step(r, len(self.fields)) <= start]
            if len(kept) < len(rows):  # rows past the checkpoint, or one cut off by a kill mid-write
                atomic_write_text(path, "\n".join(kept) + "\n")
            self.t0 -= float(kept[-1].split(",")[1]) if len(kept) > 1 else 0.0

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.path is None:
            return
        if self._new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w" if self._new else "a", newline="") as f:
            if self._new:
                csv.writer(f).writerow(self.fields)
                self._new = False
            csv.writer(f).writerow([step, f"{time.time() - self.t0:.1f}", *(f"{values[k]:.6g}" for k in self.fields[2:])])


def _logged_step(row: str, columns: int) -> float:
    """A log row's step; infinity for a row cut short, so that it is dropped."""
    cells = row.split(",")
    try:
        return int(cells[0]) if len(cells) == columns and cells[-1] else math.inf
    except ValueError:
        return math.inf


def progress_bar(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def check_out_path(out: Path, resume: bool) -> None:
    if out.exists() and not resume:
        raise NervError(f"{out} exists; pass --resume to continue it or choose another --out")
    if resume and not out.exists():
        raise NervError(f"--resume: {out} does not exist")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise NervError(f"{out}: folder {parent} does not exist")
