"""The embedded default model: loads offline, generates at both resolutions, and reconstructs
held-out synthetic clips (a seed not used in training) no worse than when it was shipped."""

import numpy as np
import pytest

from nerv_rt.data.synthetic import MOTIONS, make_clip
from nerv_rt.evaluate.gen import evaluate_generation
from nerv_rt.evaluate.metrics import motion_ratio
from nerv_rt.evaluate.recon import clip_metrics
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sources import ASSETS_DIR
from tests.test_cli import read_frames, run

# Measured when shipped (2026-12-07), on these 16 clips (2 per class, made in memory; `scripts/motion_stages.py`):
# 23.3 dB from the encoder alone; with the 128^2 model's default encoding (100 token-refinement steps, one frame per
# quarter, temporal term weighted 8) 29.0 dB and motion ratio 0.88. `scripts/eval_default.sh` (32 clips read back
# from .mp4) gives 23.2 / 29.1 dB, 0.87. The floors sit below the shipped figures: regressions fail. How they moved
# with each model: docs/default-model.md, "The regression floors, with their history".
ENCODER_FLOOR_DB = 22.7
DEFAULT_FLOOR_DB = 27.0
RECON_MOTION_FLOOR = 0.8
# Generated clips (DDIM 50, guidance 2, seed 0) when shipped, 16 per class: motion ratio 0.87 / 0.87 at 128^2 / 256^2,
# class accuracy 79 / 72 % by the shipped classifier (chance 12.5 %). The test checks 4 per class: motion 0.83 / 0.66,
# class accuracy 50 of 64 over both. The 256^2 motion is 0.06 over its floor (pan_left alone 0.21), the thinnest
# margin a default has had (69c4349: 0.88). 2 per class was too few to hold a floor: over seeds 0-9 an earlier model with
# 10000-step DiTs spread 0.60-1.15 at 256^2.
# The class floor pools both resolutions (64 clips): a retrain as good as the 10000-step one (p ~ 0.6) falls below 24 of
# 64 with probability 1e-4; one read right 20 % of the time (an eps DiT of 4000 steps) reaches it 0.1 % of the time.
GEN_MOTION_FLOOR = 0.6
GEN_CLASS_FLOOR = 24 / 64
GEN_PER_CLASS = 4
HELD_OUT_SEED = 1  # the default model was trained on seed 0


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.load("default", backend="torch")


def test_assets_are_small_and_offline():
    files = [p for p in ASSETS_DIR.rglob("*") if p.is_file()]
    per_res = ["config.json", "decoder.onnx", "dit.onnx", "encoder.onnx", "manifest.json", "model.safetensors"]
    assert sorted(p.relative_to(ASSETS_DIR).as_posix() for p in files) == [
        f"tiny-{res}/{name}" for res in (128, 256) for name in per_res]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20  # weights and graphs together


def test_default_loads_and_generates_both_resolutions(pipe):
    assert pipe.resolutions == [128, 256]
    for res in (128, 256):
        cfg = pipe.model(res).config
        assert cfg.class_names == tuple(sorted(MOTIONS))
        video = pipe.generate(frames=6, res=res, steps=10, seed=0, class_label="pan_right")
        assert video.shape == (1, 6, res, res, 3)
        # image content, not a flat frame (std 0; the least contrasted real clips of seed 1: 8-9; the 128^2 model of
        # 69c4349 drew a dark scene at seed 0 here, std 4.6)
        assert video.std() > 2
        assert np.abs(video[0, 0].astype(int) - video[0, -1]).mean() > 0.5  # it moves


def test_default_reconstructs_held_out_clips(pipe):
    clips = [make_clip(HELD_OUT_SEED, i, 128, 16)[0] for i in range(2 * len(MOTIONS))]

    def recon(refine_steps: int | None) -> tuple[float, float]:  # one clip at a time: faster than a batch on a CPU
        recons = [pipe.decode(pipe.encode(c[None], refine_steps=refine_steps), frames=16)[0] for c in clips]
        return float(np.mean([clip_metrics(c, r)[0] for c, r in zip(clips, recons)])), motion_ratio(recons, clips)

    assert pipe.default_refine_steps(128) == 100
    assert recon(0)[0] >= ENCODER_FLOOR_DB
    psnr, moved = recon(None)
    assert psnr >= DEFAULT_FLOOR_DB and moved >= RECON_MOTION_FLOOR


def test_default_generates_moving_clips_of_their_class():
    pipe = Pipeline.load("default", backend="onnxruntime")
    results = [evaluate_generation(pipe, res, per_class=GEN_PER_CLASS) for res in (128, 256)]
    assert [r["motion_ratio"] >= GEN_MOTION_FLOOR for r in results] == [True, True], [r["motion_ratio"] for r in results]
    class_accuracy = np.mean([r["class_accuracy"] for r in results])  # 32 clips each
    assert class_accuracy >= GEN_CLASS_FLOOR, class_accuracy


def test_generate_with_no_arguments_but_out(tmp_path):
    res = run("generate", "--out", tmp_path / "clip.mp4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    n, shape = read_frames(tmp_path / "clip.mp4")
    assert n == 16 and shape == (128, 128, 3)


def test_recon_class_script(tmp_path):
    """scripts/recon_class.py (docs/default-model.md's reconstruction class-accuracy table) runs and reports what it says."""
    import json
    import subprocess
    import sys

    from tests.test_cli import ROOT

    out = tmp_path / "rc.json"
    res = subprocess.run([sys.executable, "scripts/recon_class.py", "--per-class", "1", "--refine-steps", "0,4",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["clips"] == len(MOTIONS) and [r["refine_steps"] for r in doc["rows"]] == [0, 4]
    for r in doc["rows"]:
        assert np.sum(r["confusion"]) == len(MOTIONS) and r["class_accuracy"] == np.trace(r["confusion"]) / len(MOTIONS)


def test_camera_motion_script(tmp_path):
    """scripts/camera_motion.py (docs/default-model.md's camera-motion tables) runs on the clips `eval gen` makes and reads: its
    read-right counts are eval gen's, and real pans and zooms are camera moves."""
    import json
    import subprocess
    import sys

    from nerv_rt.evaluate.gen import evaluate_generation
    from tests.test_cli import ROOT

    out = tmp_path / "cm.json"
    res = subprocess.run([sys.executable, "scripts/camera_motion.py", "--per-class", "2", "--refine-steps", "0",
                          "--refine-clips", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    classes = json.loads(out.read_text())["classes"]
    assert list(classes) == [m for m in MOTIONS if not m.startswith("shapes")]
    gen = evaluate_generation(Pipeline.load("default"), 128, per_class=2)  # the backend the script and eval gen pick
    for name, row in classes.items():
        k = gen["classes"].index(name)
        assert (row["generated_read_right"] or {"clips": 0})["clips"] == gen["confusion"][k][k]
        assert row["real"]["explained"] > 0.9 and row["bank"] is None and row["refined_0"]["clips"] == 1
        assert (row["real"]["border"] > 0.3 if name == "zoom_in" else row["real"]["border"] < -0.3 if name == "zoom_out"
                else row["real"]["shift"] > 0.5)
