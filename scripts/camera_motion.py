"""How much of the frame-to-frame change of pans and zooms is camera motion, for real clips, the autodecoder bank's
renders and generated clips (nerv_rt.evaluate.metrics.camera_motion: a global shift / scale / rotation fitted by
Lucas-Kanade), per class. The numbers behind the README's "Why pans read as zooms".

    python scripts/camera_motion.py --model default --res 128 --bank runs/ad128.pt --data runs/synth128 --json cm.json

Generated clips are those of `nerv-rt eval gen` at the same --per-class, seed and guidance (DDIM 50), real ones its
held-out clips (seed 1); the classifier's reading of each generated clip splits them into read right and wrong.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from motion_stages import bank_renders

from nerv_rt.evaluate.classifier import Classifier
from nerv_rt.evaluate.gen import real_clips
from nerv_rt.evaluate.metrics import camera_motion
from nerv_rt.runtime.pipeline import Pipeline

CAMERA = ("pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "zoom_out")


def summary(clips: list[np.ndarray]) -> dict[str, float] | None:
    """Mean camera_motion figures over clips (None for none)."""
    if not clips:
        return None
    fits = [camera_motion(c) for c in clips]
    return {k: float(np.mean([f[k] for f in fits])) for k in fits[0]} | {"clips": len(clips)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--per-class", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank", type=Path, help="a train autodecode checkpoint (its bank) ...")
    ap.add_argument("--data", type=Path, help="... and the folder it was trained on")
    ap.add_argument("--bank-clips", type=int, default=128, help="training clips rendered from the bank (all classes)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if (args.bank is None) != (args.data is None):
        ap.error("--bank and --data go together")

    pipe = Pipeline.load(args.model)
    cfg = pipe.model(args.res).config
    names = list(cfg.class_names)
    judge = Classifier()
    reals = real_clips(tuple(CAMERA), args.per_class, cfg.res, cfg.frames, None)
    banked: dict[str, list[np.ndarray]] = {c: [] for c in CAMERA}
    if args.bank:
        _, made, made_names = bank_renders(args.bank, args.data, args.bank_clips)
        for clip, name in zip(made, made_names):
            if name in banked:
                banked[name].append(clip)
    result: dict = {"model": args.model, "res": cfg.res, "per_class": args.per_class, "guidance": args.guidance,
                    "seed": args.seed, "bank": str(args.bank) if args.bank else None, "classes": {}}
    for name in CAMERA:
        c = names.index(name)
        tokens = pipe.sample_tokens(cfg.res, args.per_class, c, 50, "ddim", args.guidance, 0.0, args.seed,
                                    first=c * args.per_class)
        gen = list(pipe.decode(tokens, cfg.frames, cfg.res))
        read = judge(np.stack(gen))[0].argmax(1) == judge.meta.class_names.index(name)
        result["classes"][name] = {
            "real": summary(reals[name]), "bank": summary(banked[name]), "generated": summary(gen),
            "generated_read_right": summary([g for g, r in zip(gen, read) if r]),
            "generated_read_wrong": summary([g for g, r in zip(gen, read) if not r])}
        row = result["classes"][name]
        print(name, " | ".join(f"{k} shift {v['shift']:.2f} border {v['border']:+.2f} explained {v['explained']:.2f}"
                                for k, v in row.items() if v and k in ("real", "bank", "generated")), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
