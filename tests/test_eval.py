"""reconstruct / eval recon / eval gen end to end, FVD from a local TorchScript feature extractor, LPIPS loading."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.errors import NervError
from nerv_rt.evaluate.metrics import camera_motion, confusion_matrix, frechet_distance
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
    copy = tmp_path / "mine.mp4"
    copy.write_bytes(video.read_bytes())
    assert_clean_error(run("reconstruct", copy, "--model", tiny_ckpt, "--out", copy, "--backend", "torch"),
                       f"{copy} is the input {copy}; choose another output path")
    assert copy.read_bytes() == video.read_bytes()  # the user's video, untouched


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


def test_confusion_matrix_rows_are_wanted_columns_predicted():
    m = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


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
    # the model's default: the same 10 steps (two processes' refinements agree to float32 rounding, not bit for bit:
    # CI saw them differ in the 7th digit once, as oneDNN's multithreaded backward need not sum in one order)
    default = recon(tmp_path / "r10.pt")
    assert default.keys() == refined.keys() and default["refine_steps"] == 10
    assert all(default[k] == (pytest.approx(v, rel=1e-5) if isinstance(v, float) else v)
               for k, v in refined.items()), (default, refined)
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["config"]["refine_steps"] = 10
    (export / "manifest.json").write_text(json.dumps(manifest))
    assert recon(export, "--backend", "onnxruntime")["refine_steps"] == 0
    res = run("eval", "recon", clips_dir, "--model", export, "--backend", "onnxruntime", "--refine-steps", 2)
    assert_clean_error(res, "needs autograd")


@pytest.fixture(scope="module")
def synthetic_classes_ckpt(tmp_path_factory):
    """A random tiny checkpoint whose classes are the synthetic set's (so eval gen can make real clips of them)."""
    from nerv_rt.data.synthetic import MOTIONS
    from tests.conftest import random_checkpoint

    ck = random_checkpoint(128)
    path = tmp_path_factory.mktemp("gen") / "m.pt"
    ckpt_io.save(replace(ck, config=replace(ck.config, class_names=tuple(sorted(MOTIONS)))), path)
    return path


def test_eval_gen_reports_motion_accuracy_and_frechet(synthetic_classes_ckpt):
    res = run("eval", "gen", "--model", synthetic_classes_ckpt, "--n-per-class", 2, "--steps", 2, "--json")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    names = r["classes"]
    assert len(names) == 8 and set(r["motion_ratio_per_class"]) == set(names) and r["motion_ratio"] >= 0
    assert 0 <= r["class_accuracy"] <= 1 and np.array(r["confusion"]).sum() == 16  # 2 generated clips per class
    assert np.array(r["confusion"]).shape == (8, 8)
    f = r["frechet"]
    assert f["real_vs_real_floor"] > 0 and f["generated_vs_real"] >= 0 and f["ratio"] == pytest.approx(
        f["generated_vs_real"] / f["real_vs_real_floor"])
    assert 0.5 <= r["classifier"]["heldout_accuracy"] <= 1 and "real_accuracy" in r["classifier"]


def test_eval_gen_with_a_folder_of_real_clips(tmp_path, synthetic_classes_ckpt):
    """--real: one sub-folder per class name; classes the folder lacks are a clear error."""
    from nerv_rt.data.synthetic import write_synthetic

    write_synthetic(tmp_path / "real", 32, seed=5)  # 4 clips of each of the 8 classes
    res = run("eval", "gen", "--model", synthetic_classes_ckpt, "--n-per-class", 2, "--steps", 2,
              "--real", tmp_path / "real", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["real"] == str(tmp_path / "real")
    # a user's own classes: no class accuracy, and no figure of the classifier's that is not about them
    own = tmp_path / "own"
    own.mkdir()
    for k, folder in enumerate(sorted((tmp_path / "real").iterdir())):
        shutil.copytree(folder, own / f"c{k}")
    ck = ckpt_io.load(synthetic_classes_ckpt)
    ckpt_io.save(replace(ck, config=replace(ck.config, class_names=tuple(f"c{k}" for k in range(8)))), tmp_path / "own.pt")
    res = run("eval", "gen", "--model", tmp_path / "own.pt", "--n-per-class", 2, "--steps", 2, "--real", own)
    assert res.returncode == 0, res.stderr
    assert "the classifier does not know these classes" in res.stdout and "accuracy on real clips" not in res.stdout
    shutil.rmtree(tmp_path / "real" / "zoom_out")
    assert_clean_error(run("eval", "gen", "--model", synthetic_classes_ckpt, "--real", tmp_path / "real"),
                       "fewer than 2 clips of 16 frames for classes ['zoom_out']")
    assert_clean_error(run("eval", "gen", "--model", synthetic_classes_ckpt, "--n-per-class", 0),
                       "--n-per-class must be at least 2")


def test_numpy_metrics_match_the_torch_ones():
    """evaluate.metrics (numpy, the torch-free install's) gives the figures training's torch metrics give."""
    from nerv_rt.evaluate.metrics import motion, psnr, ssim
    from nerv_rt.train.losses import psnr_from_mse
    from nerv_rt.train.losses import ssim as torch_ssim

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ta, tb = (torch.from_numpy(v).permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (a, b))
    assert ssim(a, b) == pytest.approx(float(torch_ssim(ta, tb).mean()), abs=1e-5)
    assert psnr(a, b) == pytest.approx(float(psnr_from_mse((ta - tb).pow(2).mean())), abs=1e-3)
    assert motion(a) == pytest.approx(np.abs(a[-1].astype(float) - a[0]).mean())


def test_ssim_loss_is_fp32_under_bf16_autocast():
    """CUDA training runs under bf16 autocast; SSIM's variances (E[a^2] - mu^2) cancel to rounding noise in bf16 on
    smooth frames, such as an early decoder's near-constant output: the first VAE trained on a GPU stalled at 9 dB.
    CPU autocast shows the same cancellation (0.97 against 0.89 here before the fix)."""
    from nerv_rt.train.losses import ssim as torch_ssim

    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.2, 0.3, 64)
    real = (ramp[None, None, None, :] + 0.02 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    early = 0.05 + 0.001 * torch.randn(2, 3, 64, 64, generator=g)
    reference = torch_ssim(early, real)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = torch_ssim(early, real)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference)


def test_camera_motion_reads_shifts_zooms_and_noise():
    """A texture rolled 1 px a frame is a 1-px shift explained in full; the synthetic set's zooms scale the right
    way; unrelated frames and a still explain nothing."""
    from nerv_rt.data.synthetic import MOTIONS, make_clip

    rng = np.random.default_rng(0)
    spectrum = np.fft.fft2(rng.normal(size=(96, 96))) * np.exp(-np.add.outer(*(np.fft.fftfreq(96) ** 2,) * 2) * 400)
    texture = np.real(np.fft.ifft2(spectrum))  # smooth and periodic, so np.roll moves it without a seam
    texture = (texture - texture.min()) / np.ptp(texture) * 255
    rolled = np.stack([np.roll(texture, k, axis=1) for k in range(8)])[..., None].repeat(3, -1).astype(np.uint8)
    pan = camera_motion(rolled)
    assert pan["shift"] == pytest.approx(1.0, abs=0.05) and abs(pan["border"]) < 0.05 and pan["explained"] > 0.95
    zoom_in, zoom_out = (camera_motion(make_clip(1, MOTIONS.index(m), 128)[0]) for m in ("zoom_in", "zoom_out"))
    assert zoom_in["border"] > 0.3 and zoom_out["border"] < -0.3 and min(zoom_in["explained"], zoom_out["explained"]) > 0.8
    noise = camera_motion(rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8))
    still = camera_motion(rolled[:1].repeat(4, axis=0))
    assert noise["explained"] < 0.05 and still == {"shift": 0.0, "border": 0.0, "explained": 0.0}
