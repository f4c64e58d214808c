"""Package trained checkpoints as the embedded default model: per resolution one folder with the weights
(float16 safetensors, EMA weights as the DiT, no train state) and the ONNX graphs exported from exactly
those weights, written together so that the two never drift (the manifest holds the weights' sha256,
and loading checks it). The graphs read their weights from that safetensors file rather than holding a
copy (export/shared_weights.py), so the weights are stored once. The last stage of scripts/train_default.sh:

    python -m nerv_rt.export.package runs/model128.pt runs/full256.pt
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .. import checkpoint as ckpt_io
from ..errors import NervError
from ..formats import FolderOutput, atomic_path
from ..runtime.sources import ASSETS_DIR
from .onnx_export import DEFAULT_OPSET, export_checkpoint, holds_export_files
from .specs import DEFAULT_MAX_BATCH, DEFAULT_MAX_FRAMES

PACKAGE_FOLDER = FolderOutput("a packaged model (<preset>-<res> folders of weights and graphs)", lambda folder: all(
    e.is_dir() and re.fullmatch(r"\w+-\d+", e.name) and holds_export_files(e, weights=True) for e in folder.iterdir()))


def package(checkpoints: Sequence[Path], out: Path = ASSETS_DIR, step: Callable[[str], None] = print) -> Path:
    """Replace `out` (atomically) with <preset>-<res>/ folders of weights + graphs, one per checkpoint."""
    with atomic_path(out, folder=PACKAGE_FOLDER) as tmp:
        for path in checkpoints:
            ck = ckpt_io.slim(ckpt_io.load(path))
            folder = tmp / f"{ck.config.preset}-{ck.config.res}"
            ckpt_io.save_pretrained(ck, folder, dtype=torch.float16)
            shipped = ckpt_io.load(folder)  # the fp16-rounded weights the folder holds: the graphs come from these
            export_checkpoint(shipped, folder, folder, DEFAULT_OPSET, DEFAULT_MAX_FRAMES, DEFAULT_MAX_BATCH, step=step)
            step(f"{folder.name}: weights and graphs from {path}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="trained checkpoints (.pt), one per resolution")
    ap.add_argument("--out", type=Path, default=ASSETS_DIR, help="the assets folder to replace")
    args = ap.parse_args(argv)
    try:
        package(args.checkpoints, args.out)
    except NervError as e:  # one line, as the CLI's errors; `out` is left as it was
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {args.out} is as it was", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
