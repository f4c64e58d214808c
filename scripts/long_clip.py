"""Is `--frames 128` of a 16-frame model a smooth moving clip, not a still? One generated clip per class, its tokens
rendered at 16 and at 128 frames over the same 2 s (decoder times k / (F - 1)). Reports, in /255:

- motion: mean |last - first frame|, at 16 and at 128 frames (the same two times, so they should agree);
- step: mean |frame k+1 - frame k|; evenly interpolated motion makes the 128-frame step (F16 - 1) / (F - 1) =
  15/127 = 0.118 of the 16-frame one (step_ratio; 1.0 would be the 16 frames repeated, 0 a still);
- jerk: largest step over the mean step at 128 frames (1 is perfectly even motion; a clip that holds still and
  then jumps gives up to 8).

    python scripts/long_clip.py --model default --res 256 --frames 128 --json long256.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nerv_rt.evaluate.metrics import motion
from nerv_rt.runtime.pipeline import Pipeline


def steps(video: np.ndarray) -> np.ndarray:
    """Mean |frame k+1 - frame k| per k, video (F, H, W, 3) uint8."""
    return np.abs(np.diff(video.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pipe = Pipeline.load(args.model)
    cfg = pipe.model(args.res).config
    per_class = {}
    for label, name in enumerate(cfg.class_names):
        tokens = pipe.sample_tokens(args.res, 1, label, seed=args.seed)
        short, long = (pipe.decode(tokens, f, args.res)[0] for f in (cfg.frames, args.frames))
        s_short, s_long = steps(short), steps(long)
        per_class[name] = {"motion_short": motion(short), "motion_long": motion(long),
                           "step_ratio": float(s_long.mean() / max(s_short.mean(), 1e-6)),
                           "jerk": float(s_long.max() / max(s_long.mean(), 1e-6))}
        print(name, {k: round(v, 3) for k, v in per_class[name].items()}, flush=True)
    mean = {k: float(np.mean([c[k] for c in per_class.values()])) for k in next(iter(per_class.values()))}
    out = {"model": args.model, "res": args.res, "frames": args.frames, "seed": args.seed, "mean": mean,
           "per_class": per_class}
    print("mean", {k: round(v, 3) for k, v in mean.items()})
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
