"""Contact sheet of generated clips, one row per class (frames 0, 5, 10, 15 across, the class's name on the left),
and with --gifs one GIF per class, so that a reader sees the motion.

    python scripts/contact_sheet.py --res 128 --out docs/contact_sheet_128.png --gifs docs/gifs
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nerv_rt import Pipeline, save_video

FRAMES_SHOWN = (0, 5, 10, 15)


def label_strip(text: str, height: int, width: int = 112) -> np.ndarray:
    """A white strip with `text` in Pillow's built-in bitmap font."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(strip).text((4, height // 2 - 6), text, fill="black")
    return np.asarray(strip)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--out", required=True, help="the contact sheet (.png)")
    ap.add_argument("--gifs", type=Path, help="also write <class>_<res>.gif here (16 frames, the clip's 2 s)")
    args = ap.parse_args()
    pipe = Pipeline.load(args.model)
    cfg = pipe.model(args.res).config
    names = cfg.class_names or tuple(str(c) for c in range(cfg.num_classes))
    rows = []
    for label, name in enumerate(names):
        video = pipe.generate(frames=cfg.frames, res=args.res, class_label=label, steps=args.steps,
                              guidance=args.guidance, seed=args.seed)[0]
        rows.append(np.concatenate([label_strip(name, args.res), *(video[k] for k in FRAMES_SHOWN)], axis=1))
        if args.gifs:
            args.gifs.mkdir(parents=True, exist_ok=True)
            save_video(video, args.gifs / f"{name}_{args.res}.gif", fps=cfg.fps)
        print(f"{name}: seed {args.seed}")
    import imageio.v3 as iio

    iio.imwrite(args.out, np.concatenate(rows, axis=0))
    print(args.out)


if __name__ == "__main__":
    main()
