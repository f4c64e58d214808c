"""Where a model keeps or loses motion, stage by stage, on held-out synthetic clips (seed 1): the encoder's tokens,
the default encoding (encoder + refinement), the autodecoder bank of the training clips (a training checkpoint
holds it), and generation (DiT) at several guidance scales. Motion = mean |last - first frame| (/255) over the
motion of the real clips; PSNR over whole clips. The numbers behind docs/default-model.md's "Training for motion".

    python scripts/motion_stages.py --model default --bank runs/ad128b.pt --data runs/synth128 --json motion.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nerv_rt.data.synthetic import make_clip
from nerv_rt.evaluate.classifier import Classifier
from nerv_rt.evaluate.gen import real_clips
from nerv_rt.evaluate.metrics import frechet_distance, motion, motion_ratio, psnr
from nerv_rt.runtime.frames import frame_times, to_uint8
from nerv_rt.runtime.pipeline import Pipeline


def stage(made: list[np.ndarray], real: list[np.ndarray]) -> dict[str, float]:
    return {"motion_ratio": motion_ratio(made, real),
            "psnr": float(np.mean([psnr(r, m) for r, m in zip(real, made)]))}


def bank_renders(bank_ckpt: Path, data: Path, clips: int) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """The bank's tokens of `clips` training clips spread over the set, rendered by that checkpoint's decoder:
    (the real clips, their renders, their class names)."""
    import torch

    from nerv_rt import checkpoint as ckpt_io
    from nerv_rt.data.video_folder import VideoFolder

    ck = ckpt_io.load(bank_ckpt)
    vae, _ = ckpt_io.build_models(ck)
    cfg = ck.config
    folder = VideoFolder(data, cfg.frames, cfg.res)
    bank = ck.train_state["bank"].view(-1, cfg.tokens, cfg.token_dim)
    idx = np.linspace(0, len(folder) - 1, clips).astype(int)
    times = torch.from_numpy(frame_times(cfg.frames))
    real, made = [], []
    with torch.no_grad():
        for i in idx:
            video, _ = folder.batch([i], [0.0])
            real.append(to_uint8(video[0].numpy()))
            made.append(to_uint8(vae.decoder(bank[i:i + 1], times)[0].numpy()))
    return real, made, [folder.classes[folder.labels[i]] for i in idx]


def bank_stage(bank_ckpt: Path, data: Path, clips: int) -> dict[str, float]:
    """The bank renders (bank_renders), the shipped classifier's accuracy on them, and their Frechet distance in its
    features to held-out real clips over the real-vs-real floor, as `nerv-rt eval gen` measures generated clips
    (held-out sets A and B of as many clips per class as the renders have): what a DiT that reproduced the bank
    exactly would reach. The bank's training clips against A are the same distance for real clips."""
    real, made, names = bank_renders(bank_ckpt, data, clips)
    classifier = Classifier()
    labels = np.array([classifier.meta.class_names.index(name) for name in names])
    (p_real, f_real), (p_bank, f_bank) = classifier(np.stack(real)), classifier(np.stack(made))
    classes = sorted(set(names))
    per_class = min(names.count(c) for c in classes)
    held_out = real_clips(tuple(classes), 2 * per_class, made[0].shape[1], len(made[0]), None)
    f_a = classifier(np.stack([v for c in classes for v in held_out[c][0::2]]))[1]
    f_b = classifier(np.stack([v for c in classes for v in held_out[c][1::2]]))[1]
    floor = frechet_distance(f_b, f_a)
    return {**stage(made, real), "class_accuracy": float((p_bank.argmax(1) == labels).mean()),
            "real_class_accuracy": float((p_real.argmax(1) == labels).mean()),
            "frechet_ratio": frechet_distance(f_bank, f_a) / floor,
            "training_clips_frechet_ratio": frechet_distance(f_real, f_a) / floor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--clips", type=int, default=32, help="held-out clips (4 per class)")
    ap.add_argument("--bank", type=Path, help="a train autodecode checkpoint (its bank) ...")
    ap.add_argument("--data", type=Path, help="... and the folder it was trained on")
    ap.add_argument("--bank-clips", type=int, default=32, help="training clips whose bank tokens are rendered")
    ap.add_argument("--bank-only", action="store_true", help="only the bank stage (no --model stages)")
    ap.add_argument("--guidance", default="1,2,3,4")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if (args.bank is None) != (args.data is None):
        ap.error("--bank and --data go together")
    if args.bank_only:
        if args.bank is None:
            ap.error("--bank-only needs --bank and --data")
        out = {"bank": str(args.bank), "bank_training_clips": bank_stage(args.bank, args.data, args.bank_clips)}
        print("bank", out["bank_training_clips"], flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        return
    pipe = Pipeline.load(args.model, backend="torch")
    cfg = pipe.model(args.res).config
    real = [make_clip(1, i, args.res, cfg.frames)[0] for i in range(args.clips)]
    out = {"model": args.model, "res": args.res, "clips": args.clips, "real_motion": float(np.mean([motion(r) for r in real]))}
    for name, steps in (("encoder", 0), ("default_encoding", cfg.refine_steps)):
        made = [pipe.decode(pipe.encode(r[None], args.res, steps), cfg.frames, args.res)[0] for r in real]
        out[f"{name}_{steps}_steps"] = stage(made, real)
        print(name, steps, out[f"{name}_{steps}_steps"], flush=True)
    if args.bank:
        out["bank_training_clips"] = bank_stage(args.bank, args.data, args.bank_clips)
        print("bank", out["bank_training_clips"], flush=True)
    labels = [i % cfg.num_classes for i in range(args.clips)]  # make_clip's label order is the synthetic set's
    from nerv_rt.data.synthetic import MOTIONS

    for g in (float(x) for x in args.guidance.split(",")):
        made = [pipe.generate(frames=cfg.frames, res=args.res, class_label=cfg.class_names.index(MOTIONS[lab]),
                              guidance=g, seed=i)[0] for i, lab in enumerate(labels)]
        out[f"generated_guidance_{g:g}"] = {"motion_ratio": stage(made, real)["motion_ratio"]}
        print("generated", g, out[f"generated_guidance_{g:g}"], flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
