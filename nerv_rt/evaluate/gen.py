"""Generation quality, judged against real clips of the same classes: motion ratio, class accuracy of the
synthetic-domain classifier, a Frechet distance in its feature space (with its real-vs-real floor), and
FVD with a local I3D file.

Real clips are the synthetic set's held-out seed (1; the default model trained on seed 0), made in memory,
or a user folder with one sub-folder per class (the model's class names). Two disjoint real sets of equal
size, A and B, make the floor: FD(generated, A) is compared with FD(B, A) at the same sample size.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import NervError, option
from ..runtime.pipeline import Pipeline, check_sampling
from ..runtime.video_io import list_videos, read_video
from .classifier import CLASSIFIER_DIR, Classifier
from .metrics import confusion_matrix, frechet_distance, motion
from .recon import FeatureExtractor

HELD_OUT_SEED = 1


def real_clips(names: tuple[str, ...], per_class: int, res: int, frames: int, folder: Path | None) -> dict[str, list[np.ndarray]]:
    """Up to `per_class` real clips [T, res, res, 3] per class name: the synthetic held-out seed, or `folder`."""
    if folder is None:
        from ..data.synthetic import MOTIONS, make_clip  # the train extra (scikit-image photos, scipy)

        unknown = [c for c in names if c not in MOTIONS]
        if unknown:
            raise NervError(f"the model's classes {unknown} are not the synthetic set's; pass real clips with "
                            f"{option('real')} (a folder per class)")
        return {c: [make_clip(HELD_OUT_SEED, MOTIONS.index(c) + len(MOTIONS) * j, res, frames)[0] for j in range(per_class)]
                for c in names}
    root = Path(folder)
    out: dict[str, list[np.ndarray]] = {c: [] for c in names}
    for path in list_videos(root):
        parts = path.relative_to(root).parts
        if len(parts) > 1 and parts[0] in out and len(out[parts[0]]) < per_class:
            clip = read_video(path, 0, frames, res)
            if len(clip) == frames:
                out[parts[0]].append(clip)
    missing = [c for c, v in out.items() if len(v) < 2]
    if missing:
        raise NervError(f"{root}: fewer than 2 clips of {frames} frames for classes {missing} (one folder per class)")
    return out


def evaluate_generation(pipe: Pipeline, res: int | None = None, per_class: int = 16, steps: int = 50,
                        sampler: str = "ddim", guidance: float = 2.0, seed: int = 0, real: Path | None = None,
                        i3d: Path | None = None, classifier_dir: Path = CLASSIFIER_DIR,
                        progress: Callable[[str], None] | None = None) -> dict:
    """`per_class` generated clips per class against 2 x `per_class` real ones (sets A and B)."""
    if per_class < 2:
        raise NervError(f"{option('per_class')} must be at least 2 (a Frechet distance needs a covariance), got {per_class}")
    check_sampling(steps, sampler, guidance, 0.0, per_class, seed)
    m = pipe.model(res)
    cfg = m.config
    names = cfg.class_names or tuple(str(c) for c in range(cfg.num_classes))
    step = progress or (lambda s: None)
    step("real clips")
    reals = real_clips(names, 2 * per_class, cfg.res, cfg.frames, real)
    gens: dict[str, list[np.ndarray]] = {}
    for c, name in enumerate(names):
        step(f"generating {name}")
        tokens = pipe.sample_tokens(cfg.res, per_class, c, steps, sampler, guidance, 0.0, seed, first=c * per_class)
        gens[name] = list(pipe.decode(tokens, cfg.frames, cfg.res))
    set_a = {c: v[0::2] for c, v in reals.items()}
    set_b = {c: v[1::2] for c, v in reals.items()}
    result: dict = {"res": cfg.res, "backend": pipe.describe(), "per_class": per_class, "steps": steps,
                    "sampler": sampler, "guidance": guidance, "seed": seed,
                    "real": str(real) if real else f"synthetic, seed {HELD_OUT_SEED}", "classes": list(names)}
    # 1. Motion: mean temporal change of generated clips over that of real ones, per class and overall
    moved = {c: np.mean([motion(v) for v in gens[c]]) for c in names}
    real_moved = {c: np.mean([motion(v) for v in reals[c]]) for c in names}
    result["motion_ratio"] = float(np.mean(list(moved.values())) / np.mean(list(real_moved.values())))
    result["motion_ratio_per_class"] = {c: float(moved[c] / max(real_moved[c], 1e-9)) for c in names}
    result["motion"] = {"generated": float(np.mean(list(moved.values()))), "real": float(np.mean(list(real_moved.values())))}
    # 2. The classifier: its accuracy on real clips, on generated ones (confusion matrix), and the feature distance
    step("classifying")
    judge = Classifier(classifier_dir)
    known = [c for c in names if c in judge.meta.class_names]
    as_array = lambda d: np.stack([v for c in names for v in d[c]])  # noqa: E731
    p_gen, f_gen = judge(as_array(gens))
    _, f_a = judge(as_array(set_a))
    p_b, f_b = judge(as_array(set_b))
    result["classifier"] = {"heldout_accuracy": judge.meta.heldout_accuracy, "heldout_clips": judge.meta.heldout_clips}
    if known == list(names):
        index = [judge.meta.class_names.index(c) for c in names]
        want_gen = np.repeat(np.arange(len(names)), per_class)
        pred_gen = np.argmax(p_gen[:, index], axis=1)
        want_b = np.repeat(np.arange(len(names)), [len(set_b[c]) for c in names])
        result["class_accuracy"] = float((pred_gen == want_gen).mean())
        result["class_accuracy_per_class"] = {c: float((pred_gen[want_gen == k] == k).mean()) for k, c in enumerate(names)}
        result["confusion"] = confusion_matrix(want_gen, pred_gen, len(names)).tolist()  # rows: requested class
        result["classifier"]["real_accuracy"] = float((np.argmax(p_b[:, index], axis=1) == want_b).mean())
    else:
        result["class_accuracy"] = None  # the classifier does not know these classes
    fd, floor = frechet_distance(f_gen, f_a), frechet_distance(f_b, f_a)
    result["frechet"] = {"generated_vs_real": fd, "real_vs_real_floor": floor, "ratio": fd / max(floor, 1e-12),
                         "features": "synthetic-domain classifier"}
    if i3d is not None:
        step("FVD")
        detector = FeatureExtractor(i3d)
        feats = lambda d: np.concatenate([detector(v) for c in names for v in d[c]])  # noqa: E731
        result["fvd"] = frechet_distance(feats(gens), feats(set_a))
    return result
