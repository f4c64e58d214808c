"""The embedded default model: loads offline, generates at both resolutions, and reconstructs
held-out synthetic clips (a seed not used in training) no worse than when it was shipped."""

import numpy as np
import pytest

from nerv_rt.data.synthetic import MOTIONS, make_clip
from nerv_rt.errors import EXTRA_OF
from nerv_rt.evaluate import clip_metrics
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sources import ASSETS_DIR
from tests.test_cli import read_frames, run

# The shipped model measures 21.6 dB on these 16 clips (20.8 dB with `nerv-rt eval recon` on 64 clips
# read back from .mp4). The 26 dB gate is NOT met (see README); this is a regression floor.
RECORDED_FLOOR_DB = 21.0
HELD_OUT_SEED = 1  # the default model was trained on seed 0


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.load("default", backend="torch")


def test_assets_are_small_and_offline():
    files = [p for p in ASSETS_DIR.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(ASSETS_DIR).as_posix() for p in files) == [
        "tiny-128/config.json", "tiny-128/model.safetensors", "tiny-256/config.json", "tiny-256/model.safetensors"]
    assert sum(p.stat().st_size for p in files) <= 15 * 2**20


def test_default_loads_and_generates_both_resolutions(pipe):
    assert pipe.resolutions == [128, 256]
    for res in (128, 256):
        cfg = pipe.model(res).config
        assert cfg.class_names == tuple(sorted(MOTIONS))
        video = pipe.generate(frames=6, res=res, steps=10, seed=0, class_label="pan_right")
        assert video.shape == (1, 6, res, res, 3)
        assert video.std() > 5  # image content, not a flat frame
        assert np.abs(video[0, 0].astype(int) - video[0, -1]).mean() > 0.5  # it moves


def test_default_reconstructs_held_out_clips_above_its_recorded_floor(pipe):
    psnrs = []
    for i in range(2 * len(MOTIONS)):
        clip, _ = make_clip(HELD_OUT_SEED, i, 128, 16)
        recon = pipe.decode(pipe.encode(clip[None]), frames=16)[0]
        psnrs.append(clip_metrics(clip, recon)[0])
    assert np.mean(psnrs) >= RECORDED_FLOOR_DB, psnrs


def test_generate_with_no_arguments_but_out(tmp_path):
    res = run("generate", "--out", tmp_path / "clip.mp4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    n, shape = read_frames(tmp_path / "clip.mp4")
    assert n == 16 and shape == (128, 128, 3)


def test_generate_needs_only_the_base_dependencies(tmp_path):
    """README's first command installs no extras: generating from the default model must not need
    them (nor click, which typer >= 0.20 vendors instead of depending on it)."""
    hidden = (*EXTRA_OF, "pytest", "click")
    res = run("generate", "--frames", "4", "--steps", "5", "--out", tmp_path / "clip.mp4", cwd=tmp_path, without=hidden)
    assert res.returncode == 0, res.stderr
    assert read_frames(tmp_path / "clip.mp4")[0] == 4
