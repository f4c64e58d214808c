"""Data sets and training: overfitting, resume, interruption, DDP equivalence, data errors."""
import json
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.data.synthetic import MOTIONS, make_clip, write_synthetic
from nerv_rt.data.video_folder import VideoFolder
from nerv_rt.errors import NervError
from nerv_rt.models.hyper_ae import NeRVVAE
from nerv_rt.models.presets import preset
from nerv_rt.runtime.video_io import read_video, save_video
from nerv_rt.train.dit import DiTTrainConfig, train_dit
from nerv_rt.train.vae import VAETrainConfig, train_vae

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_synthetic(root, 4, seed=3, res=128, n_frames=16)
    return root


def _csv_column(path: Path, name: str) -> np.ndarray:
    rows = path.read_text().strip().splitlines()
    col = rows[0].split(",").index(name)
    return np.array([float(r.split(",")[col]) for r in rows[1:]])


def test_synthetic_clips_are_deterministic_and_move():
    a, label = make_clip(0, 5, 128, 8)
    b, _ = make_clip(0, 5, 128, 8)
    assert a.shape == (8, 128, 128, 3) and a.dtype == np.uint8 and label == 5 % len(MOTIONS)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, make_clip(1, 5, 128, 8)[0])
    for i in range(len(MOTIONS)):
        clip, _ = make_clip(0, i, 128, 8)
        assert np.abs(clip[0].astype(int) - clip[-1]).mean() > 2, MOTIONS[i]  # every kind moves


def test_synthetic_set_is_the_same_from_parallel_workers_and_appears_only_when_complete(tmp_path, clips):
    write_synthetic(tmp_path / "par", 4, seed=3, res=128, n_frames=16, workers=2)
    serial = sorted(p.relative_to(clips) for p in clips.rglob("*.mp4"))
    assert serial == sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").rglob("*.mp4"))
    for rel in serial:
        assert (tmp_path / "par" / rel).read_bytes() == (clips / rel).read_bytes(), rel

    def interrupt() -> None:
        raise KeyboardInterrupt

    for workers in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            write_synthetic(tmp_path / "cut", 4, seed=3, progress=interrupt, workers=workers)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["par"]  # no half-written set, no temporary left
    with pytest.raises(NervError, match="exists and is not empty"):
        write_synthetic(tmp_path / "par", 4, seed=3)


def test_sigterm_stops_data_synth_without_leaving_a_folder(tmp_path):
    """timeout / kill send SIGTERM: the CLI stops as on Ctrl-C, so the temporary set is removed."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "nerv_rt", "data", "synth", "--out", str(tmp_path / "set"), "--n", "400",
                             "-j", "2"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".set.tmp-*/*/*.mp4")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_video_folder_reads_written_mp4s(clips):
    data = VideoFolder(clips, frames=16, res=128)
    assert len(data) == 4 and data.classes == sorted(MOTIONS[:4]) and data.num_classes == 4
    video, labels = data.batch([0, 3], [0.0, 0.5])
    assert video.shape == (2, 16, 3, 128, 128) and video.min() >= -1 and video.max() <= 1
    assert labels.tolist() == [0, 3]
    small = VideoFolder(clips, frames=8, res=64)  # resize + crop, shorter clips from random starts
    assert small.batch([1], [0.99])[0].shape == (1, 8, 3, 64, 64)


def test_video_folder_warns_of_mixed_frame_rates(tmp_path, clips):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one rate: no warning
        assert VideoFolder(clips, 16, 128).fps == 8
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    save_video(frames, tmp_path / "a.mp4", fps=25)
    save_video(frames, tmp_path / "b.mp4", fps=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only `train vae` asks for the rate (the model's); other stages see no warning
        mixed = VideoFolder(tmp_path, 16, 64)
    with pytest.warns(UserWarning, match=r"frame rates differ \(8 fps, b.mp4, to 25 fps, a.mp4\).*play at 25 fps, "
                      r"the first video's"):
        assert mixed.fps == 25


def test_video_folder_errors(tmp_path):
    with pytest.raises(NervError, match="no videos found"):
        VideoFolder(tmp_path, 16, 128)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(NervError, match="broken.mp4: cannot read video"):
        VideoFolder(tmp_path, 16, 128)
    (tmp_path / "c" / "broken.mp4").unlink()
    save_video(np.zeros((5, 128, 128, 3), np.uint8), tmp_path / "c" / "short.mp4")
    with pytest.raises(NervError, match="short.mp4: 5 frames, but the model's clips are 16 frames long"):
        VideoFolder(tmp_path, 16, 128)
    (tmp_path / "c" / "short.mp4").unlink()
    import av

    with av.open(str(tmp_path / "c" / "audio.mp4"), "w") as c:  # sound alone, as an extracted soundtrack
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    with pytest.raises(NervError, match="audio.mp4: no video stream in the file"):
        VideoFolder(tmp_path, 16, 128)
    with pytest.raises(NervError, match="audio.mp4: no video stream in the file"):
        read_video(tmp_path / "c" / "audio.mp4")
    with pytest.raises(NervError, match="is a file; give a folder of videos"):
        VideoFolder(tmp_path / "c" / "audio.mp4", 16, 128)


def test_video_folder_layouts(tmp_path, clips, monkeypatch):
    """Linked class folders count (a split made of links), a video beside the class folders is refused, and videos
    that would not fit in memory decoded are read from their files each time."""
    import shutil

    split = tmp_path / "split"
    split.mkdir()
    for cls in sorted(p.name for p in clips.iterdir())[:2]:
        (split / cls).symlink_to(clips / cls, target_is_directory=True)
    linked = VideoFolder(split, 16, 128)
    assert len(linked) == 2 and linked.num_classes == 2
    shutil.copy(linked.paths[0], split / "loose.mp4")
    with pytest.raises(NervError, match="loose.mp4: a video beside the class folders"):
        VideoFolder(split, 16, 128)
    (split / "loose.mp4").unlink()
    (split / "extra").mkdir()
    (split / "extra" / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")  # was skipped without a word
    with pytest.raises(NervError, match="gone.mp4: a link to a file that does not exist"):
        VideoFolder(split, 16, 128)
    cached = VideoFolder(clips, 16, 128)
    monkeypatch.setattr("nerv_rt.data.video_folder.available_bytes", lambda: 2**20)  # 1 MB free for 3 MB of frames
    with pytest.warns(UserWarning, match="decoded would take about 3 MB of memory; each clip is decoded from its file"):
        uncached = VideoFolder(clips, 16, 128)
    assert torch.equal(uncached.clip(1, 0.5), cached.clip(1, 0.5))


VAE_FAST = dict(batch=2, frames_per_step=2, gan_start=1.0, ckpt_every=2, seed=0)


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_vae_overfits_one_batch(tmp_path, clips, precision):
    cfg = VAETrainConfig(steps=40, lr=3e-3, precision=precision, **VAE_FAST)
    single = tmp_path / "one"
    write_synthetic(single, 2, seed=3, res=128, n_frames=16)
    train_vae(single, tmp_path / "v.pt", preset("tiny", 128), cfg, "cpu", log=tmp_path / "v.csv", show_progress=False)
    l2 = _csv_column(tmp_path / "v.csv", "l2")
    assert l2[-5:].mean() < 0.5 * l2[:5].mean(), l2


def test_vae_resume_matches_uninterrupted_run(tmp_path, clips):
    full = train_vae(clips, tmp_path / "full.pt", preset("tiny", 128), VAETrainConfig(steps=4, **VAE_FAST), "cpu", show_progress=False)
    train_vae(clips, tmp_path / "part.pt", preset("tiny", 128), VAETrainConfig(steps=2, **VAE_FAST), "cpu", show_progress=False)
    part = ckpt_io.load(tmp_path / "part.pt")
    assert part.train_state["step"] == 2
    resumed = train_vae(clips, tmp_path / "part.pt", preset("tiny", 128), VAETrainConfig(steps=4, **VAE_FAST), "cpu",
                        resume=True, show_progress=False)
    assert resumed.train_state["step"] == 4
    for k, v in full.vae.items():
        torch.testing.assert_close(resumed.vae[k], v, rtol=1e-5, atol=1e-6)
    exp_avg = lambda ck: ck.train_state["optim"]["state"][0]["exp_avg"]  # noqa: E731
    torch.testing.assert_close(exp_avg(resumed), exp_avg(full), rtol=1e-5, atol=1e-7)
    with pytest.raises(NervError, match="part.pt holds step 4, past --steps 3; give --steps 4 or more"):
        train_vae(clips, tmp_path / "part.pt", preset("tiny", 128), VAETrainConfig(steps=3, **VAE_FAST), "cpu",
                  resume=True, show_progress=False)
    ckpt_io.save(replace(full, train_state={**full.train_state, "kind": "dit"}), tmp_path / "dit.pt")
    with pytest.raises(NervError, match="dit.pt is not a `train vae` run"):
        train_vae(clips, tmp_path / "dit.pt", preset("tiny", 128), VAETrainConfig(steps=8, **VAE_FAST), "cpu",
                  resume=True, show_progress=False)


def test_resume_at_another_precision_warns(tmp_path, clips):
    """A resumed run takes the --precision given; when the saved run's differs, it says so."""
    train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=2, **VAE_FAST), "cpu", show_progress=False)
    with pytest.warns(UserWarning, match="trained with --precision auto; it goes on with bf16"):
        train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=3, precision="bf16", **VAE_FAST),
                  "cpu", resume=True, show_progress=False)


def test_a_diverged_run_stops_in_one_line_and_keeps_its_last_checkpoint(tmp_path, clips):
    """lr 1e3 turns the loss NaN within a few steps: the run ends before that step reaches a checkpoint."""
    cfg = VAETrainConfig(steps=6, lr=1e3, **{**VAE_FAST, "ckpt_every": 1})
    out = tmp_path / "v.pt"
    with pytest.raises(NervError, match=r"train vae: the (loss|gradient norm) is (nan|inf|-inf) at step (\d+), so the "
                                        r"run diverged \(a smaller --lr may help\); "
                                        rf"{re.escape(str(out))} holds the last checkpoint written") as stopped:
        train_vae(clips, out, preset("tiny", 128), cfg, "cpu", log=tmp_path / "v.csv", show_progress=False)
    kept = ckpt_io.load(out)
    assert kept.train_state["step"] == int(re.search(r"at step (\d+)", str(stopped.value))[1]) - 1
    assert all(v.isfinite().all() for v in kept.vae.values())
    assert np.isfinite(_csv_column(tmp_path / "v.csv", "loss")).all()


def test_a_gradient_norm_that_is_not_finite_stops_the_run(tmp_path):
    from nerv_rt.train.common import stop_if_diverged

    stop_if_diverged(torch.tensor(3.0), 0, "train dit", tmp_path / "d.pt", "gradient norm")
    with pytest.raises(NervError, match=r"^train dit: the gradient norm is inf at step 8, so the run diverged \(a "
                                        r"smaller --lr may help\); no checkpoint was written$"):
        stop_if_diverged(torch.tensor(float("inf")), 7, "train dit", tmp_path / "d.pt", "gradient norm")


def test_refuses_more_frames_per_step_than_a_clip_has(tmp_path, clips):
    with pytest.raises(NervError, match="frames_per_step 17 is more than the model's clips have \\(16\\)"):
        train_vae(clips, tmp_path / "x.pt", preset("tiny", 128), VAETrainConfig(**{**VAE_FAST, "frames_per_step": 17}),
                  "cpu", show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_without_resume(tmp_path, clips):
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(NervError, match="pass --resume"):
        train_vae(clips, tmp_path / "x.pt", preset("tiny", 128), VAETrainConfig(steps=1, **VAE_FAST), "cpu", show_progress=False)


def test_dit_training_writes_full_checkpoint(tmp_path, clips):
    vae = train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=1, **VAE_FAST), "cpu", show_progress=False)
    ck = train_dit(clips, tmp_path / "v.pt", tmp_path / "d.pt", DiTTrainConfig(steps=6, batch=4, clips_per_video=1, ckpt_every=3),
                   "cpu", log=tmp_path / "d.csv", show_progress=False)
    assert ck.dit and ck.ema and ck.token_std.shape == (16,) and (ck.token_std > 0).all()
    assert ck.vae.keys() == vae.vae.keys()
    loaded = ckpt_io.load(tmp_path / "d.pt")
    assert loaded.train_state["step"] == 6 and np.isfinite(_csv_column(tmp_path / "d.csv", "loss")).all()
    ss = _csv_column(tmp_path / "d.csv", "ss_prob")
    assert ss[0] == 0 and ss[-1] == pytest.approx(0.5)  # scheduled sampling ramps 0 -> 0.5 over 30% of steps
    assert loaded.config.dit.prediction == "v"  # the default, whatever the VAE checkpoint's config said
    with pytest.raises(NervError, match="v-prediction run"):  # resuming must not switch what the DiT predicts
        train_dit(clips, tmp_path / "v.pt", tmp_path / "d.pt", DiTTrainConfig(steps=8, batch=4, clips_per_video=1,
                  prediction="eps"), "cpu", resume=True, show_progress=False)
    slim = replace(loaded, train_state={k: v for k, v in loaded.train_state.items() if k != "optim"})
    ckpt_io.save(slim, tmp_path / "d.pt")  # as scripts/gpu_train.sh keeps them: no optimizer state
    with pytest.raises(NervError, match="holds no optim .a slimmed checkpoint"):
        train_dit(clips, tmp_path / "v.pt", tmp_path / "d.pt", DiTTrainConfig(steps=8, batch=4, clips_per_video=1),
                  "cpu", resume=True, show_progress=False)
    fast = DiTTrainConfig(steps=8, batch=4, clips_per_video=1)
    with pytest.raises(NervError, match="v.pt is not a `train dit` run"):  # --out names the VAE by mistake
        train_dit(clips, tmp_path / "v.pt", tmp_path / "v.pt", fast, "cpu", resume=True, show_progress=False)
    train_vae(clips, tmp_path / "v2.pt", preset("tiny", 128), VAETrainConfig(**{**VAE_FAST, "steps": 1, "seed": 1}), "cpu",
              show_progress=False)
    with pytest.raises(NervError, match="trained on another VAE than --vae"):
        train_dit(clips, tmp_path / "v2.pt", tmp_path / "d.pt", fast, "cpu", resume=True, show_progress=False)
    with pytest.warns(UserWarning, match="ema 0.9999 over 8 steps: the EMA weights the model samples with keep 100%"):
        train_dit(clips, tmp_path / "v.pt", tmp_path / "e.pt", replace(fast, ema=0.9999), "cpu", show_progress=False)
    for bad in ({"batch": 0}, {"ckpt_every": 0}, {"lr": -1.0}, {"ema": 1.0}, {"clips_per_video": 0}):
        with pytest.raises(NervError, match=next(iter(bad))):  # nerv_rt's one error type (and a ValueError)
            DiTTrainConfig(**bad)


def test_train_dit_cli_turns_scheduled_sampling_off(tmp_path, clips):
    train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=1, **VAE_FAST), "cpu", show_progress=False)
    subprocess.run([sys.executable, "-m", "nerv_rt", "train", "dit", str(clips), "--vae", str(tmp_path / "v.pt"), "--out",
                    str(tmp_path / "d.pt"), "--steps", "4", "--batch", "4", "--clips-per-video", "1",
                    "--scheduled-sampling", "0", "--device", "cpu"], cwd=ROOT, check=True, capture_output=True)
    assert (_csv_column(tmp_path / "d.csv", "ss_prob") == 0).all()
    assert ckpt_io.load(tmp_path / "d.pt").train_state["train_config"]["scheduled_sampling"] == 0


def test_interrupted_run_leaves_last_checkpoint_loadable(tmp_path, clips):
    out = tmp_path / "run.pt"
    proc = subprocess.Popen([sys.executable, "-m", "nerv_rt.train", "vae", str(clips), "--out", str(out), "--steps", "200",
                             "--batch", "2", "--frames-per-step", "2", "--ckpt-every", "1", "--gan-start", "1",
                             "--device", "cpu"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # kill it somewhere in the middle of later steps or saves
    proc.kill()
    proc.wait()
    ck = ckpt_io.load(out)
    assert ck.train_state["step"] >= 1
    ckpt_io.build_models(ck)


def test_interrupt_says_which_step_resume_continues_from(tmp_path, clips):
    import signal

    out = tmp_path / "run.pt"
    proc = subprocess.Popen([sys.executable, "-m", "nerv_rt", "train", "vae", str(clips), "--out", str(out), "--steps",
                             "200", "--batch", "2", "--frames-per-step", "2", "--ckpt-every", "2", "--gan-start", "1",
                             "--device", "cpu"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not out.exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # as Ctrl-C
    _, err = proc.communicate(timeout=60)
    step = ckpt_io.load(out).train_state["step"]
    assert proc.returncode == 130 and err.strip() == f"interrupted: {out} holds step {step}; --resume continues from it"


def test_ddp_two_processes_match_single_process(tmp_path, clips):
    args = ["vae", str(clips), "--steps", "3", "--batch", "4", "--frames-per-step", "2", "--gan-start", "1",
            "--ckpt-every", "3", "--device", "cpu", "--lr", "0.1"]
    single = subprocess.run([sys.executable, "-m", "nerv_rt.train", *args, "--out", str(tmp_path / "single.pt")],
                            cwd=ROOT, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                          "-m", "nerv_rt.train", *args, "--out", str(tmp_path / "ddp.pt")],
                         cwd=ROOT, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("ddp.pt (") == 1, ddp.stdout  # the last line once, from rank 0
    a, b = ckpt_io.load(tmp_path / "single.pt"), ckpt_io.load(tmp_path / "ddp.pt")
    torch.manual_seed(0)  # the trainers' initial weights: compare the two updates, not two untouched models
    init = NeRVVAE(a.config).state_dict()
    update = torch.cat([(a.vae[k] - init[k]).flatten() for k in init])
    drift = torch.cat([(b.vae[k] - a.vae[k]).flatten() for k in init])
    # Un-averaged gradients would differ by the order of the update itself; float reduction order
    # (amplified by Adam on near-zero gradients) stays far below 1% of it.
    assert update.norm() > 0
    assert drift.norm() < 0.01 * update.norm()
    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                              "29518", "-m", "nerv_rt.train", *args[:2], "--steps", "4", *args[4:], "--seed", "1",
                              "--out", str(tmp_path / "ddp.pt"), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("its draws from here are not the saved run's") == 1, resumed.stderr  # rank 0's


def test_autodecode_encoder_only_stage(tmp_path, clips, tiny_ckpt):
    """--lr 0 --token-lr 0 from an autodecode run: its bank carries over unchanged, the decoder stays, and the
    encoder alone learns: its own renders through the frozen decoder get better."""
    from nerv_rt.train.autodecode import AutodecodeConfig, train_autodecode

    fast = dict(batch=2, frames_per_step=2, ckpt_every=100)
    first = train_autodecode(clips, tiny_ckpt, tmp_path / "ad.pt",
                             AutodecodeConfig(steps=6, lr=3e-3, token_lr=3e-2, encoder_weight=0, **fast), "cpu",
                             show_progress=False)
    enc = train_autodecode(clips, tmp_path / "ad.pt", tmp_path / "enc.pt",
                           AutodecodeConfig(steps=20, lr=0, token_lr=0, encoder_lr=3e-3, **fast), "cpu",
                           log=tmp_path / "e.csv", show_progress=False)
    assert torch.equal(enc.train_state["bank"], first.train_state["bank"])
    assert all(torch.equal(enc.vae[k], v) for k, v in first.vae.items() if k.startswith("decoder."))
    assert any(not torch.equal(enc.vae[k], v) for k, v in first.vae.items() if k.startswith("encoder."))
    encoder_l2 = _csv_column(tmp_path / "e.csv", "encoder_l2")
    assert encoder_l2[-5:].mean() < 0.8 * encoder_l2[:5].mean(), encoder_l2

    with pytest.raises(NervError, match="nothing to train"):
        train_autodecode(clips, tmp_path / "ad.pt", tmp_path / "x.pt", AutodecodeConfig(lr=0, token_lr=0, encoder_weight=0),
                         "cpu", show_progress=False)
    short_bank = replace(first, train_state={**first.train_state, "bank": first.train_state["bank"][:3]})
    ckpt_io.save(short_bank, tmp_path / "ad3.pt")
    with pytest.raises(NervError, match="holds tokens for 3 videos"):
        train_autodecode(clips, tmp_path / "ad3.pt", tmp_path / "y.pt", AutodecodeConfig(steps=1, **fast), "cpu",
                         show_progress=False)
    with pytest.raises(NervError, match="holds none"):  # a frozen bank needs one to keep
        train_autodecode(clips, tiny_ckpt, tmp_path / "z.pt", AutodecodeConfig(steps=1, token_lr=0, **fast), "cpu",
                         show_progress=False)
    other = tmp_path / "other"  # as many videos, other names: the bank's rows would be other clips' tokens
    shutil.copytree(clips, other)
    first_video = sorted(p for p in other.rglob("*") if p.is_file())[0]
    first_video.rename(first_video.with_name("renamed" + first_video.suffix))
    with pytest.raises(NervError, match="other videos"):
        train_autodecode(other, tmp_path / "ad.pt", tmp_path / "w.pt", AutodecodeConfig(steps=1, **fast), "cpu",
                         show_progress=False)
    assert not any((tmp_path / f"{n}.pt").exists() for n in "xyzw")
    with pytest.warns(UserWarning, match="froze bank, decoder; these flags freeze decoder"):  # the bank unfreezes
        resumed = train_autodecode(clips, tmp_path / "ad.pt", tmp_path / "enc.pt",  # and takes the new token lr
                                   AutodecodeConfig(steps=21, lr=0, token_lr=3e-3, encoder_lr=3e-3, **fast), "cpu",
                                   resume=True, show_progress=False)
    assert resumed.train_state["bank_optim"]["param_groups"][0]["lr"] == 3e-3
    assert not torch.equal(resumed.train_state["bank"], first.train_state["bank"])


@pytest.mark.parametrize("stage", ["autodecode", "encoder"])
def test_single_process_stages_refuse_torchrun(tmp_path, monkeypatch, stage):
    """The autodecoder bank is not sharded, and the encoder stage has no DDP path: under torchrun both stop first."""
    from nerv_rt.train.autodecode import AutodecodeConfig, train_autodecode
    from nerv_rt.train.encoder import EncoderStageConfig, train_encoder

    run_stage, cfg = {"autodecode": (train_autodecode, AutodecodeConfig()),
                      "encoder": (train_encoder, EncoderStageConfig())}[stage]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(NervError, match=f"train {stage} runs in one process.*without torchrun"):
        run_stage(tmp_path, tmp_path / "init.pt", tmp_path / "out.pt", cfg, "cpu", show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_training_configs_refuse_one_frame_per_step():
    """The Python API refuses what the CLI's --frames-per-step (min 2) does: with one frame per clip the temporal
    term has no change to compare and the loss would be NaN from the first step."""
    from nerv_rt.train.autodecode import AutodecodeConfig
    from nerv_rt.train.encoder import EncoderStageConfig

    for config in (VAETrainConfig, AutodecodeConfig, EncoderStageConfig):
        with pytest.raises(ValueError, match="frames_per_step must be 2 or more"):
            config(frames_per_step=1)
        with pytest.raises(ValueError, match="frames_per_step"):
            replace(config(), frames_per_step=0)
        assert config(frames_per_step=2).frames_per_step == 2


def test_training_precision_is_autocast_on_the_cpu_only_when_asked():
    from nerv_rt.train.autodecode import AutodecodeConfig
    from nerv_rt.train.common import autocast
    from nerv_rt.train.encoder import EncoderStageConfig

    linear, x, cpu = torch.nn.Linear(4, 4), torch.randn(2, 4), torch.device("cpu")
    with autocast(cpu, "bf16"):
        assert linear(x).dtype == torch.bfloat16
    for precision in ("auto", "fp32"):  # auto: bf16 only on CUDA
        with autocast(cpu, precision):
            assert linear(x).dtype == torch.float32
    for config in (VAETrainConfig, AutodecodeConfig, EncoderStageConfig, DiTTrainConfig):
        with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
            config(precision="fp16")


def test_encoder_stage_fits_the_encoder_alone(tmp_path, clips, tiny_ckpt):
    """train encoder: only the encoder changes (decoder, DiT, EMA and token statistics carry over), its renders
    through the frozen decoder get better, a resumed run matches an uninterrupted one, and bad runs say why."""
    from nerv_rt.train.encoder import EncoderStageConfig, train_encoder

    fast = dict(batch=2, frames_per_step=2, lr=3e-3, ckpt_every=2)
    plain = ckpt_io.load(tiny_ckpt)
    base = replace(plain, ema={k: v + 1 for k, v in plain.dit.items()}, token_std=torch.rand(plain.config.token_dim))
    ckpt_io.save(base, tmp_path / "base.pt")
    fitted = train_encoder(clips, tmp_path / "base.pt", tmp_path / "e.pt", EncoderStageConfig(steps=30, **fast), "cpu",
                           log=tmp_path / "e.csv", show_progress=False)
    l2 = _csv_column(tmp_path / "e.csv", "l2")
    assert l2[-5:].mean() < 0.8 * l2[:5].mean(), l2
    assert any(not torch.equal(fitted.vae[k], v) for k, v in base.vae.items() if k.startswith("encoder."))
    assert all(torch.equal(fitted.vae[k], v) for k, v in base.vae.items() if not k.startswith("encoder."))
    for part in ("dit", "ema"):
        assert all(torch.equal(getattr(fitted, part)[k], v) for k, v in getattr(base, part).items())
    assert torch.equal(fitted.token_std, base.token_std)
    assert fitted.config == base.config
    refined = train_encoder(clips, tmp_path / "base.pt", tmp_path / "r.pt", EncoderStageConfig(steps=1, refine_steps=7,
                            **fast), "cpu", show_progress=False)
    assert refined.config == replace(base.config, refine_steps=7)  # the output's default encoding

    short = EncoderStageConfig(steps=4, **fast)
    whole = train_encoder(clips, tiny_ckpt, tmp_path / "w.pt", short, "cpu", show_progress=False)
    train_encoder(clips, tiny_ckpt, tmp_path / "p.pt", EncoderStageConfig(steps=2, **fast), "cpu", show_progress=False)
    resumed = train_encoder(clips, tiny_ckpt, tmp_path / "p.pt", short, "cpu", resume=True, show_progress=False)
    for k, v in whole.vae.items():
        torch.testing.assert_close(resumed.vae[k], v, rtol=1e-5, atol=1e-6)
    with pytest.raises(NervError, match="not an encoder-stage run"):  # base.pt is no encoder run: left as it was
        train_encoder(clips, tiny_ckpt, tmp_path / "base.pt", short, "cpu", resume=True, show_progress=False)
    assert not (tmp_path / "base.csv").exists()
    with pytest.raises(NervError, match="exists"):
        train_encoder(clips, tiny_ckpt, tmp_path / "w.pt", short, "cpu", show_progress=False)
    ckpt_io.save(replace(base, dit=None, ema=None), tmp_path / "ad.pt")  # e.g. an autodecode run: keeps its bank
    with pytest.raises(NervError, match="holds no DiT"):
        train_encoder(clips, tmp_path / "ad.pt", tmp_path / "x.pt", short, "cpu", show_progress=False)
    with pytest.raises(NervError, match="trains nothing"):
        train_encoder(clips, tiny_ckpt, tmp_path / "y.pt", EncoderStageConfig(lr=0), "cpu", show_progress=False)
    assert not any((tmp_path / f"{n}.{ext}").exists() for n in "xy" for ext in ("pt", "csv"))


def test_init_from_copies_the_overlapping_block(tmp_path):
    from nerv_rt.train.vae import init_from
    from tests.conftest import random_checkpoint

    ckpt_io.save(random_checkpoint(128), tmp_path / "r128.pt")
    model = NeRVVAE(preset("tiny", 256, num_classes=8))
    assert init_from(model, tmp_path / "r128.pt") > 0
    src, own = ckpt_io.load(tmp_path / "r128.pt").vae, model.state_dict()
    torch.testing.assert_close(own["encoder.patch_embed.weight"], src["encoder.patch_embed.weight"])  # same shape
    torch.testing.assert_close(own["decoder.convs.1.head.mix.weight"][:, :32], src["decoder.convs.1.head.mix.weight"])
    torch.testing.assert_close(own["encoder.queries"][:, :32], src["encoder.queries"])  # 32 of the 40 queries
    with pytest.raises(NervError, match="is a tiny model and this run trains S"):
        init_from(NeRVVAE(preset("S", 128, num_classes=8)), tmp_path / "r128.pt")


def test_autodecode_fits_decoder_bank_and_encoder(tmp_path, clips, tiny_ckpt):
    """train autodecode: L2 falls clearly; the encoder learns only when asked (encoder_weight > 0); the DiT is
    dropped (it is retrained on the bank); a resumed run matches an uninterrupted one (decoder, encoder, bank)."""
    from nerv_rt.train.autodecode import AutodecodeConfig, train_autodecode

    fast = dict(batch=2, frames_per_step=2, lr=3e-3, token_lr=3e-2, ckpt_every=2)
    base = ckpt_io.load(tiny_ckpt)
    full = train_autodecode(clips, tiny_ckpt, tmp_path / "full.pt", AutodecodeConfig(steps=40, **fast), "cpu",
                            log=tmp_path / "a.csv", show_progress=False)
    l2, token_l2 = _csv_column(tmp_path / "a.csv", "l2"), _csv_column(tmp_path / "a.csv", "token_l2")
    assert l2[-5:].mean() < 0.5 * l2[:5].mean(), l2
    assert token_l2[0] == 0 and token_l2.max() > 0  # the bank starts at the encoder's means, then moves away
    assert full.config.refine_steps == AutodecodeConfig().refine_steps  # the output's default encoding
    assert full.train_state["bank"].shape == (4, base.config.tokens * base.config.token_dim)
    encoder_keys = [k for k in base.vae if k.startswith("encoder.")]
    assert any(not torch.equal(full.vae[k], base.vae[k]) for k in encoder_keys)
    assert any(not torch.equal(full.vae[k], v) for k, v in base.vae.items() if k.startswith("decoder."))
    assert full.dit is None and full.ema is None

    frozen = train_autodecode(clips, tiny_ckpt, tmp_path / "frozen.pt", AutodecodeConfig(steps=2, encoder_weight=0, **fast),
                              "cpu", show_progress=False)
    assert all(torch.equal(frozen.vae[k], base.vae[k]) for k in encoder_keys)
    # --token-noise: the decoder renders from noisy tokens, so decoder and bank move differently; the encoder's
    # target stays the clean bank, and the setting is recorded with the run
    noisy = train_autodecode(clips, tiny_ckpt, tmp_path / "noisy.pt",
                             AutodecodeConfig(steps=2, encoder_weight=0, token_noise=0.3, **fast), "cpu", show_progress=False)
    assert not torch.equal(noisy.train_state["bank"], frozen.train_state["bank"])
    assert noisy.train_state["train_config"]["token_noise"] == 0.3

    short = AutodecodeConfig(steps=4, **fast)
    whole = train_autodecode(clips, tiny_ckpt, tmp_path / "w.pt", short, "cpu", show_progress=False)
    train_autodecode(clips, tiny_ckpt, tmp_path / "p.pt", AutodecodeConfig(steps=2, **fast), "cpu", show_progress=False)
    resumed = train_autodecode(clips, tiny_ckpt, tmp_path / "p.pt", short, "cpu", resume=True, show_progress=False)
    for k, v in whole.vae.items():
        torch.testing.assert_close(resumed.vae[k], v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(resumed.train_state["bank"], whole.train_state["bank"], rtol=1e-5, atol=1e-6)
    with pytest.raises(NervError, match="not an autodecode run"):
        train_autodecode(clips, tiny_ckpt, Path(tiny_ckpt), short, "cpu", resume=True, show_progress=False)

    # The DiT learns the bank by default (one token set per video), or the encoder's posteriors when asked.
    from nerv_rt.checkpoint import build_models
    from nerv_rt.train.dit import training_tokens

    vae, _ = build_models(whole)
    data = VideoFolder(clips, 16, 128)
    means, stds, labels = training_tokens(vae, whole, data, DiTTrainConfig(), torch.device("cpu"))
    torch.testing.assert_close(means.flatten(1), whole.train_state["bank"])
    assert (stds == 0).all() and labels.tolist() == data.labels
    means, stds, _ = training_tokens(vae, whole, data, DiTTrainConfig(tokens="encoder", clips_per_video=1), torch.device("cpu"))
    assert means.shape == (4, 32, 16) and (stds > 0).all()
    # refined: the default encoding's tokens (encoder + refinement), which render their clips better
    refined, stds, _ = training_tokens(vae, whole, data, DiTTrainConfig(tokens="refined", clips_per_video=1),
                                       torch.device("cpu"))
    assert refined.shape == means.shape and (stds == 0).all()
    assert whole.config.refine_steps > 0 and all(n == 16 for n in data.lengths)  # one clip each

    def render_error(tokens):
        with torch.no_grad():
            video = torch.cat([data.batch([i], [0.0])[0] for i in range(len(data))])
            return (vae.decoder(tokens, torch.linspace(0, 1, 16)) - video).pow(2).mean().item()

    assert render_error(refined) < 0.9 * render_error(means)
    with pytest.raises(NervError, match="no default refinement"):
        training_tokens(vae, base, data, DiTTrainConfig(tokens="refined"), torch.device("cpu"))
    with pytest.raises(NervError, match="holds no autodecoder bank"):
        training_tokens(vae, base, data, DiTTrainConfig(tokens="bank"), torch.device("cpu"))
    renamed = tmp_path / "renamed"  # the same clips, one under another name: the bank's labels would be wrong
    shutil.copytree(clips, renamed)
    first = sorted(renamed.rglob("*.mp4"))[0]
    first.rename(first.with_name("z" + first.name))
    with pytest.raises(NervError, match="the bank was trained on other videos"):
        training_tokens(vae, whole, VideoFolder(renamed, 16, 128), DiTTrainConfig(), torch.device("cpu"))
    # scripts/motion_stages.py --bank-only: the bank's renders, judged as `eval gen` judges generated clips
    subprocess.run([sys.executable, str(ROOT / "scripts/motion_stages.py"), "--bank-only", "--bank", str(tmp_path / "w.pt"),
                    "--data", str(clips), "--bank-clips", "4", "--json", str(tmp_path / "bank.json")], check=True)
    bank = json.loads((tmp_path / "bank.json").read_text())["bank_training_clips"]
    assert 0 <= bank["class_accuracy"] <= 1 and bank["psnr"] > 5
    assert bank["frechet_ratio"] > 0 and bank["training_clips_frechet_ratio"] > 0
    from dataclasses import replace

    ckpt_io.save(replace(whole, config=replace(whole.config, num_classes=4)), tmp_path / "w4.pt")  # the clips' classes
    ck = train_dit(clips, tmp_path / "w4.pt", tmp_path / "dit.pt", DiTTrainConfig(steps=2, batch=4, ckpt_every=2), "cpu",
                   show_progress=False)
    assert ck.dit is not None and ck.vae.keys() == whole.vae.keys()


def test_csv_log_starts_with_its_first_row(tmp_path):
    from nerv_rt.train.common import CsvLog

    path = tmp_path / "logs" / "run.csv"
    CsvLog(path, ["loss"])  # a run that fails before its first step
    assert not path.exists()
    log = CsvLog(path, ["loss"])
    for step in (1, 2, 3):
        log.write(step, {"loss": 1 / step})
    CsvLog(path, ["loss"], start=2).write(3, {"loss": 0.25})  # resumed from a checkpoint of step 2: step 3 again
    assert _csv_column(path, "step").tolist() == [1, 2, 3] and _csv_column(path, "loss")[-1] == 0.25
    with open(path, "a") as f:
        f.write("4,9.5,0.1")  # a row cut off by a kill mid-write (no newline, no loss digits after it)
    CsvLog(path, ["loss"], start=3).write(4, {"loss": 0.2})
    assert _csv_column(path, "step").tolist() == [1, 2, 3, 4] and _csv_column(path, "loss")[-1] == 0.2
    CsvLog(path, ["loss"]).write(1, {"loss": 1.0})  # a new run replaces the old log
    assert _csv_column(path, "loss").tolist() == [1.0]


def test_resume_with_another_data_order_warns(tmp_path, clips):
    """--resume keeps the data order only with the saved run's seed, batch and frames per step: other values say so."""
    import warnings

    train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=2, **VAE_FAST), "cpu", show_progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same settings: no warning
        train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=3, **VAE_FAST), "cpu", resume=True,
                  show_progress=False)
    with pytest.warns(UserWarning, match=r"v.pt was trained with seed=0, batch=2; it goes on with seed=7, batch=1, so its "
                                         r"draws from here are not the saved run's"):
        train_vae(clips, tmp_path / "v.pt", preset("tiny", 128), VAETrainConfig(steps=4, **{**VAE_FAST, "seed": 7, "batch": 1}),
                  "cpu", resume=True, show_progress=False)
