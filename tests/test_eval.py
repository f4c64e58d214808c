"""reconstruct / eval recon end to end, FVD from a local TorchScript feature extractor, LPIPS loading."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.errors import NervError
from nerv_rt.evaluate.metrics import frechet_distance
from nerv_rt.train.losses import StructuralLoss, perceptual_loss
from tests.test_cli import assert_clean_error, read_frames, run


class MeanFeatures(torch.nn.Module):
    """Stands in for I3D: videos [B, 3, T, H, W] -> per-channel mean and std features [B, 6]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4))], dim=1)


class L1Distance(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().flatten(1).mean(1)


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("heldout")
    res = run("data", "synth", "--out", d, "--n", 3, "--seed", 9)
    assert res.returncode == 0, res.stderr
    assert len(list(d.rglob("*.mp4"))) == 3
    return d


def test_reconstruct_writes_side_by_side(tmp_path, clips_dir, tiny_ckpt):
    video = next(clips_dir.rglob("*.mp4"))
    res = run("reconstruct", video, "--model", tiny_ckpt, "--out", tmp_path / "sbs.mp4", "--backend", "torch")
    assert res.returncode == 0, res.stderr
    n, shape = read_frames(tmp_path / "sbs.mp4")
    assert n == 16 and shape == (128, 256, 3)
    assert "PSNR" in res.stderr


def test_eval_recon_json_and_fvd(tmp_path, clips_dir, tiny_ckpt):
    i3d = tmp_path / "i3d.pt"
    torch.jit.save(torch.jit.script(MeanFeatures()), i3d)
    res = run("eval", "recon", clips_dir, "--model", tiny_ckpt, "--json", "--i3d", i3d)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["clips"] == 3 and 0 < d["ssim"] <= 1 and np.isfinite(d["psnr"]) and d["fvd"] >= 0


def test_eval_recon_errors(tmp_path, clips_dir, tiny_ckpt):
    (tmp_path / "empty").mkdir()
    assert_clean_error(run("eval", "recon", tmp_path / "empty", "--model", tiny_ckpt), "no videos found")
    (tmp_path / "bad.pt").write_text("nope")
    assert_clean_error(run("eval", "recon", clips_dir, "--model", tiny_ckpt, "--i3d", tmp_path / "bad.pt"),
                       "not a TorchScript feature extractor")


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 4))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shifted = frechet_distance(a, a + 3.0)
    assert shifted == pytest.approx(4 * 9.0, rel=1e-6)  # |mu difference|^2, same covariance


def test_perceptual_loss_choice(tmp_path):
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert isinstance(perceptual_loss(None), StructuralLoss)
    assert perceptual_loss(None)(x, x).item() == pytest.approx(0, abs=1e-5)
    path = tmp_path / "lpips.pt"
    torch.jit.save(torch.jit.script(L1Distance()), path)
    lp = perceptual_loss(path)
    assert lp(x, y).item() == pytest.approx((x - y).abs().mean().item(), rel=1e-5)
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(NervError, match="not a TorchScript LPIPS"):
        perceptual_loss(tmp_path / "junk.pt")


def test_eval_recon_refine_steps(tmp_path, clips_dir, tiny_ckpt, tiny_export):
    """--refine-steps: Adam on the tokens after the encoder must beat the encoder's tokens. Without the
    flag the model's own refine_steps applies on torch, and 0 on backends without autograd; asking those
    for refinement is a clear error."""
    def recon(model, *args):
        res = run("eval", "recon", clips_dir, "--model", model, "--json", *args)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    plain, refined = recon(tiny_ckpt, "--refine-steps", 0), recon(tiny_ckpt, "--refine-steps", 10)
    assert plain["refine_steps"] == 0 and refined["refine_steps"] == 10
    assert refined["psnr"] > plain["psnr"] + 0.1, (plain, refined)
    ck = ckpt_io.load(tiny_ckpt)
    ckpt_io.save(replace(ck, config=replace(ck.config, refine_steps=10)), tmp_path / "r10.pt")
    assert recon(tmp_path / "r10.pt") == refined  # the model's default
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["config"]["refine_steps"] = 10
    (export / "manifest.json").write_text(json.dumps(manifest))
    assert recon(export, "--backend", "onnxruntime")["refine_steps"] == 0
    res = run("eval", "recon", clips_dir, "--model", export, "--backend", "onnxruntime", "--refine-steps", 2)
    assert_clean_error(res, "needs autograd")
