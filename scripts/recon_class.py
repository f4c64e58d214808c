"""Does reconstruction cap class accuracy? The shipped classifier on held-out synthetic clips (seed 1, the clips
`eval gen` compares against) and on their reconstructions by a model (encoder + `--refine-steps` of refinement,
then the decoder): what generation could reach if the DiT sampled the tokens of real clips.
The numbers behind docs/default-model.md's "Which tokens cap the class".

    python scripts/recon_class.py --model default --res 128 --per-class 4 --refine-steps 80,160 --json rc.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from nerv_rt.evaluate.classifier import Classifier
from nerv_rt.evaluate.gen import real_clips
from nerv_rt.evaluate.metrics import confusion_matrix, motion_ratio
from nerv_rt.runtime.pipeline import Pipeline


def accuracy_and_confusion(probs: np.ndarray, labels: np.ndarray, classes: int) -> tuple[float, list[list[int]]]:
    confusion = confusion_matrix(labels, probs.argmax(1), classes)
    return float(np.trace(confusion) / len(labels)), confusion.tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--refine-steps", default="0,80,160", help="comma-separated refinement step counts")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()

    pipe = Pipeline.load(args.model, backend="torch", device="cpu")  # refinement needs autograd
    classifier = Classifier()
    names = classifier.meta.class_names
    real = real_clips(names, args.per_class, args.res, 16, None)
    clips = np.stack([clip for c in names for clip in real[c]])
    labels = np.repeat(np.arange(len(names)), args.per_class)
    real_acc, _ = accuracy_and_confusion(classifier(clips)[0], labels, len(names))
    rows = []
    for steps in (int(s) for s in args.refine_steps.split(",")):
        t0 = time.perf_counter()
        recon = np.stack([np.asarray(pipe.decode(pipe.encode(v, res=args.res, refine_steps=steps), 16, args.res))[0]
                          for v in clips])
        acc, confusion = accuracy_and_confusion(classifier(recon)[0], labels, len(names))
        rows.append({"refine_steps": steps, "class_accuracy": acc, "motion_ratio": motion_ratio(list(recon), list(clips)),
                     "confusion": confusion, "seconds": round(time.perf_counter() - t0)})
        print(f"refine {steps:4d}: class accuracy {acc:.0%} (real clips {real_acc:.0%}), "
              f"motion ratio {rows[-1]['motion_ratio']:.2f}, {rows[-1]['seconds']} s", flush=True)
    doc = {"model": args.model, "res": args.res, "clips": len(clips), "classes": list(names),
           "real_class_accuracy": real_acc, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
