"""Contact sheet of generated clips: one row per (seed, class), frames 0, 5, 10, 15 across.

    python scripts/contact_sheet.py --model default --res 128 --out docs/contact_sheet_128.png
"""
from __future__ import annotations

import argparse

import imageio.v3 as iio
import numpy as np

from nerv_rt import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pipe = Pipeline.load(args.model)
    cfg = pipe.model(args.res).config
    rows = []
    for seed in range(args.seeds):
        label = seed % cfg.num_classes
        video = pipe.generate(frames=16, res=args.res, class_label=label, steps=args.steps, guidance=args.guidance, seed=seed)[0]
        rows.append(np.concatenate([video[k] for k in (0, 5, 10, 15)], axis=1))
        print(f"seed {seed}: class {cfg.class_names[label] if cfg.class_names else label}")
    iio.imwrite(args.out, np.concatenate(rows, axis=0))
    print(args.out)


if __name__ == "__main__":
    main()
