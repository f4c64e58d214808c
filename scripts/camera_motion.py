"""How much of the frame-to-frame change of pans and zooms is camera motion (nerv_rt.evaluate.metrics.camera_motion:
a global shift / scale / rotation fitted by Lucas-Kanade), per class, for real clips and what a model makes of them:
generated clips, the autodecoder bank's renders of its training clips (--bank, --data), and held-out clips encoded
and refined against the frozen decoder for each of --refine-steps. The numbers behind docs/default-model.md's "Why pans read
as zooms".

    python scripts/camera_motion.py --res 128 --bank runs/ad128b.pt --data runs/synth128 --refine-steps 0,80,320,1280 \
        --json camera128.json

Generated clips are those of `nerv-rt eval gen` at the same --per-class, --seed and --guidance (DDIM 50), the real
ones its held-out clips (seed 1); the classifier's reading of each generated clip splits them into read right and
wrong. Refinement needs torch: it runs on the torch backend.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from motion_stages import bank_renders

from nerv_rt.data.synthetic import MOTIONS
from nerv_rt.evaluate.classifier import Classifier
from nerv_rt.evaluate.gen import real_clips
from nerv_rt.evaluate.metrics import camera_motion, psnr
from nerv_rt.runtime.pipeline import Pipeline

CAMERA = tuple(m for m in MOTIONS if m.startswith(("pan", "zoom")))


def summary(fits: list[dict[str, float]]) -> dict[str, float] | None:
    """Mean camera_motion figures over clips (None for none)."""
    if not fits:
        return None
    return {k: float(np.mean([f[k] for f in fits])) for k in fits[0]} | {"clips": len(fits)}


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
    ap.add_argument("--refine-steps", default="", help="comma-separated refinement step counts (e.g. 0,80,320)")
    ap.add_argument("--refine-clips", type=int, default=4, help="held-out clips per class to reconstruct")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if (args.bank is None) != (args.data is None):
        ap.error("--bank and --data go together")
    refine_steps = [int(s) for s in args.refine_steps.split(",") if s]

    pipe = Pipeline.load(args.model)  # as `nerv-rt eval gen` loads it
    refiner = Pipeline.load(args.model, backend="torch", device="cpu") if refine_steps else None  # needs autograd
    cfg = pipe.model(args.res).config
    names = list(cfg.class_names)
    judge = Classifier()
    reals = real_clips(CAMERA, args.per_class, cfg.res, cfg.frames, None)
    bank_fits: dict[str, dict[str, list]] = {c: {"real": [], "made": []} for c in CAMERA}
    if args.bank:
        real, made, made_names = bank_renders(args.bank, args.data, args.bank_clips)
        for r, m, name in zip(real, made, made_names):
            if name in bank_fits:
                bank_fits[name]["real"].append(camera_motion(r))
                bank_fits[name]["made"].append(camera_motion(m))
    result: dict = {"model": args.model, "backend": pipe.describe(), "classifier_heldout_accuracy":
                    judge.meta.heldout_accuracy, "res": cfg.res, "per_class": args.per_class,
                    "guidance": args.guidance, "seed": args.seed, "bank": str(args.bank) if args.bank else None,
                    "classes": {}}
    for name in CAMERA:
        c = names.index(name)
        tokens = pipe.sample_tokens(cfg.res, args.per_class, c, 50, "ddim", args.guidance, 0.0, args.seed,
                                    first=c * args.per_class)
        gen = list(pipe.decode(tokens, cfg.frames, cfg.res))
        read = judge(np.stack(gen))[0].argmax(1) == judge.meta.class_names.index(name)
        gen_fits = [camera_motion(g) for g in gen]
        row = {"real": summary([camera_motion(v) for v in reals[name]]),
               "bank_real": summary(bank_fits[name]["real"]), "bank": summary(bank_fits[name]["made"]),
               "generated": summary(gen_fits),
               "generated_read_right": summary([f for f, r in zip(gen_fits, read) if r]),
               "generated_read_wrong": summary([f for f, r in zip(gen_fits, read) if not r])}
        for steps in refine_steps:
            clips = reals[name][:args.refine_clips]
            recon = [np.asarray(refiner.decode(refiner.encode(v, res=cfg.res, refine_steps=steps), cfg.frames,
                                               cfg.res))[0] for v in clips]
            row[f"refined_{steps}"] = summary([camera_motion(r) for r in recon]) | {
                "psnr": float(np.mean([psnr(v, r) for v, r in zip(clips, recon)]))}
        result["classes"][name] = row
        print(name, " | ".join(f"{k} shift {v['shift']:.2f} border {v['border']:+.2f} explained {v['explained']:.2f}"
                               for k, v in row.items() if v and not k.startswith("generated_")), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
