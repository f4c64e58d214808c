"""The command line end to end on tiny models: outputs, one-line errors with exit code 2, no partial files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


HIDE_MODULES = """
from importlib.machinery import PathFinder
find_on_path, hidden = PathFinder.find_spec, {hidden!r}
def find_spec(name, path=None, target=None):  # as if not installed: import fails, find_spec gives None
    return None if name.split(".")[0] in hidden else find_on_path(name, path, target)
PathFinder.find_spec = staticmethod(find_spec)
"""


def run(*args, cwd=None, without: tuple[str, ...] = ()):
    """The real console script in a subprocess: what a user sees (stdout, stderr, exit code).
    `without` names top-level modules to make unimportable, as in an install without them."""
    code = (HIDE_MODULES.format(hidden=set(without)) if without else "") + "from nerv_rt.cli import app; app()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def assert_clean_error(res, pattern: str):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.splitlines()  # exactly one line: no blank line left by a progress bar either
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def read_frames(path: Path):
    av = pytest.importorskip("av")  # lazily: the GPU machines' image lacks PyAV, and this module's tests are imported everywhere
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape


@pytest.mark.parametrize("group", [(), ("train",), ("eval",), ("data",)])
def test_a_command_group_alone_prints_its_help(group):
    res = run(*group)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    first = res.stdout.splitlines()[0]  # "Usage: nerv-rt train [OPTIONS] COMMAND [ARGS]..." (the program is -c here)
    assert first.startswith("Usage: ") and first.endswith(" ".join((*group, "[OPTIONS] COMMAND [ARGS]..."))), first


def test_info_json_for_preset_L():
    res = run("info", "--preset", "L", "--res", "128", "--json")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    assert set(d) == {"preset", "res", "tokens", "token_dim", "params", "macs"}
    assert d["tokens"] == 128 and set(d["params"]) == {"encoder", "decoder", "dit"}
    assert 0.55 <= d["macs"]["decoder_16f"] / 1241.15e9 <= 0.75


def test_info_describes_a_checkpoint(tiny_ckpt):
    res = run("info", tiny_ckpt, "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tokens"] == 32


def test_info_of_a_vae_only_checkpoint_and_its_export_shows_no_dit(tmp_path):
    from dataclasses import replace

    from nerv_rt import checkpoint as ckpt_io
    from nerv_rt.export.onnx_export import export
    from tests.conftest import random_checkpoint

    vae_only = tmp_path / "vae.pt"  # what `train vae` and `train autodecode` write
    ckpt_io.save(replace(random_checkpoint(128), dit=None), vae_only)
    ckpt_io.save_pretrained(replace(random_checkpoint(128), dit=None), tmp_path / "vae_folder")  # its config says
    for source in (vae_only, tmp_path / "vae_folder", export(vae_only, tmp_path / "exp")):
        d = json.loads(run("info", source, "--json").stdout)
        assert set(d["params"]) == {"encoder", "decoder"} and set(d["macs"]) == {"decoder_16f"}, source
    table = run("info", vae_only)
    assert table.returncode == 0, table.stderr
    assert "params dit" not in table.stdout and "DiT MACs" in table.stdout


def test_default_names_the_embedded_model_and_a_path_a_local_default_folder(tmp_path, tiny_export, monkeypatch):
    import shutil

    from nerv_rt import Pipeline
    from nerv_rt.runtime.sources import ASSETS_DIR, resolve

    shutil.copytree(tiny_export, tmp_path / "default")
    embedded = run("info", "--json", cwd=tmp_path)
    assert embedded.returncode == 0 and len(json.loads(embedded.stdout)) == 2  # the default's 128^2 and 256^2
    assert embedded.stderr.strip() == ("warning: 'default' is the embedded default model, not ./default here; give "
                                      "./default for that")
    local = run("info", "./default", "--json", cwd=tmp_path)
    assert local.returncode == 0 and local.stderr == "" and json.loads(local.stdout)["res"] == 128
    monkeypatch.chdir(tmp_path)
    local_model = resolve(Path("default"))[0]  # a Path is a path, even one spelled "default"
    assert local_model.path == Path("default") and local_model.origin == "./default"  # hints name ./default
    with pytest.warns(UserWarning, match="embedded default model") as caught:
        assert resolve("default")[0].path.parent == ASSETS_DIR
    with pytest.warns(UserWarning, match="embedded default model") as caught_deeper:
        Pipeline.load("default")  # found three calls deep in nerv_rt
    ours = [w for w in [*caught, *caught_deeper] if "embedded default model" in str(w.message)]
    assert len(ours) == 2 and {w.filename for w in ours} == {__file__}  # each warning names the caller's line


def test_info_takes_a_model_or_a_preset_not_both(tiny_ckpt):
    assert_clean_error(run("info", tiny_ckpt, "--preset", "L"), "not both")


def test_generate_at_a_precision_the_export_lacks_says_how_to_export_it(tmp_path, tiny_export):
    res = run("generate", "--model", tiny_export, "--precision", "fp16", "--out", tmp_path / "c.mp4")
    assert_clean_error(res, "no fp16 dit graph; export one with `nerv-rt export <checkpoint or default> --precision fp16`")
    assert list(tmp_path.iterdir()) == []


def test_generate_mp4_end_to_end(tmp_path, tiny_ckpt):
    out = tmp_path / "clip.mp4"
    res = run("generate", "--model", tiny_ckpt, "--frames", 20, "--steps", 3, "--out", out, "--backend", "torch")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    assert "sample" in res.stderr and "decode" in res.stderr and "write" in res.stderr
    n, shape = read_frames(out)
    assert n == 20 and shape == (128, 128, 3)


def test_export_then_generate_gif_and_png_folder(tmp_path, tiny_ckpt):
    folder = tmp_path / "exp"
    res = run("export", tiny_ckpt, "--out", folder)
    assert res.returncode == 0, res.stderr
    assert (folder / "manifest.json").is_file()
    res = run("generate", "--model", folder, "--frames", 4, "--steps", 2, "--n", 2, "--out", tmp_path / "g.gif")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "g-0.gif").is_file() and (tmp_path / "g-1.gif").is_file()
    res = run("generate", "--model", folder, "--frames", 4, "--steps", 2, "--fps", 64, "--out", tmp_path / "fast.gif")
    assert "plays at 50 fps instead of 64" in res.stderr  # and the time line says the rate the file plays at
    assert res.stderr.rstrip().endswith("(1 x 4 frames at 128^2, 50 fps)"), res.stderr
    res = run("generate", "--model", folder, "--frames", 3, "--steps", 2, "--out", tmp_path / "frames")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"frame_0000{i}.png" for i in range(3)]


@pytest.fixture(scope="module")
def bad_sources(tmp_path_factory, tiny_ckpt):
    d = tmp_path_factory.mktemp("bad")
    (d / "text.pt").write_text("not a checkpoint")
    data = Path(tiny_ckpt).read_bytes()
    (d / "cut.pt").write_bytes(data[: len(data) // 3])
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    (d / "empty").mkdir()
    (d / "badjson").mkdir()
    (d / "badjson" / "manifest.json").write_text("{nope")
    return d


@pytest.mark.parametrize("model,pattern", [("missing.pt", "no such file"), ("text.pt", "not a nerv-rt checkpoint"),
                                           ("cut.pt", "truncated"), ("foreign.pt", "no format marker"),
                                           ("empty", "not a checkpoint, an export folder"), ("badjson", "invalid JSON")])
def test_generate_bad_model_sources(tmp_path, bad_sources, model, pattern):
    out = tmp_path / "x.mp4"
    assert_clean_error(run("generate", "--model", bad_sources / model, "--out", out), pattern)
    assert not out.exists()


@pytest.mark.parametrize("args,pattern", [
    (["--res", "256"], "--res 256 is not available; this model has 128"),
    (["--frames", "0"], "--frames must be in 1..4096"),
    (["--frames", "5000"], "--frames must be in 1..4096"),
    (["--backend", "tvm"], "unknown backend 'tvm'"),
    (["--sampler", "euler"], "unknown sampler 'euler'"),
    (["--steps", "0"], "--steps"),
    (["--guidance", "nan"], "Invalid value for '--guidance': must be a number in [0, 50], got nan"),
    (["--guidance", "inf"], "Invalid value for '--guidance': must be a number in [0, 50], got inf"),
    (["--fps", "0"], "Invalid value for '--fps': must be a number in [0.01, 1000], got 0.0"),
    (["--fps", "-3"], "Invalid value for '--fps'"),
    (["--frames", "abc"], "Invalid value for '--frames'"),
    (["--n", "0"], "--n must be at least 1"),
    (["--seed", "-1"], "--seed must be in 0..2^63-1"),
    (["--chunk", "0"], "--chunk must be at least 1"),
    (["--class", "nope"], "--class 'nope' is not a class of this model"),
    (["--bogus"], "No such option: --bogus"),
])
def test_generate_bad_arguments(tmp_path, tiny_ckpt, args, pattern):
    out = tmp_path / "x.mp4"
    assert_clean_error(run("generate", "--model", tiny_ckpt, "--out", out, *args), pattern)
    assert list(tmp_path.iterdir()) == []


def test_generate_bad_output_paths(tmp_path, tiny_ckpt):
    assert_clean_error(run("generate", "--model", tiny_ckpt, "--out", tmp_path / "no" / "x.mp4"), "does not exist")
    assert_clean_error(run("generate", "--model", tiny_ckpt, "--out", tmp_path / "x.avi"), "unknown output extension '.avi'")
    if os.geteuid() == 0:  # permission bits do not bind root: use a folder the kernel refuses writes to
        readonly = Path("/sys")
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir()
        readonly.chmod(0o555)
    assert_clean_error(run("generate", "--model", tiny_ckpt, "--out", readonly / "x.mp4"), "not writable")


def test_generate_edited_onnx(tmp_path, tiny_export):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(tiny_export, copy)
    with open(copy / "dit.onnx", "ab") as f:
        f.write(b"\0")
    out = tmp_path / "x.mp4"
    assert_clean_error(run("generate", "--model", copy, "--out", out), "sha256 does not match")
    assert not out.exists()


def test_export_errors(tmp_path, tiny_export, bad_sources):
    assert_clean_error(run("export", bad_sources / "cut.pt", "--out", tmp_path / "o"), "truncated")
    assert_clean_error(run("export", tiny_export, "--out", tmp_path / "o"), "an export folder without weights")
    for opset in ("14", "30"):  # 14 was written as 18 and recorded as 14; 30 failed in the ONNX checker
        assert_clean_error(run("export", "default", "--opset", opset, "--out", tmp_path / "o"), "--opset must be in 18..24")
    # ignored before: the graphs are the same for every device, --device picks what --aoti compiles for
    assert_clean_error(run("export", "default", "--device", "cuda", "--out", tmp_path / "o"), "--device cuda is for --aoti")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("stage", ["vae", "autodecode", "encoder"])
def test_train_refuses_one_frame_per_step(tmp_path, stage):
    """The temporal term compares consecutive rendered frames: with one it would be NaN, and so the loss."""
    res = run("train", stage, tmp_path, "--out", tmp_path / "x.pt", "--frames-per-step", "1")
    assert_clean_error(res, "--frames-per-step")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stage", ["vae", "dit", "autodecode", "encoder"])
@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--batch", "0"), ("--ckpt-every", "0"), ("--lr", "-1"),
                                        ("--lr", "nan")])
def test_train_refuses_values_no_run_can_use(tmp_path, stage, flag, value):
    res = run("train", stage, tmp_path, "--out", tmp_path / "x.pt", flag, value)
    assert_clean_error(res, f"Invalid value for '{flag}'")
    assert list(tmp_path.iterdir()) == []  # no log, no checkpoint


@pytest.mark.parametrize("flag,value", [("--kl-weight", "nan"), ("--gan-weight", "-1"), ("--perceptual-weight", "inf"),
                                        ("--gan-start", "2")])
def test_train_vae_refuses_loss_weights_no_run_can_use(tmp_path, flag, value):
    """These trained to a NaN loss and wrote its checkpoint, exit 0."""
    assert_clean_error(run("train", "vae", tmp_path, "--out", tmp_path / "x.pt", flag, value), f"Invalid value for '{flag}'")
    assert list(tmp_path.iterdir()) == []


def test_stage_configs_refuse_loss_weights_no_run_can_use():
    from nerv_rt.errors import ConfigError
    from nerv_rt.train.autodecode import AutodecodeConfig
    from nerv_rt.train.vae import VAETrainConfig

    for bad in (dict(kl_weight=float("nan")), dict(gan_weight=-1.0), dict(gan_start=1.5), dict(seed=-1)):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            VAETrainConfig(**bad)
    with pytest.raises(ConfigError, match="token_noise must be a finite number >= 0, got -0.1"):
        AutodecodeConfig(token_noise=-0.1)


def test_negative_seeds_are_one_line(tmp_path):
    """`data synth --seed -1` ended in two tracebacks from its worker processes (numpy refuses negative seeds)."""
    assert_clean_error(run("data", "synth", "--out", tmp_path / "s", "--n", "4", "--seed", "-1"), "Invalid value for '--seed'")
    assert_clean_error(run("train", "vae", tmp_path, "--out", tmp_path / "x.pt", "--seed", "-1"), "Invalid value for '--seed'")
    assert list(tmp_path.iterdir()) == []


def test_train_dit_refuses_an_ema_that_never_moves(tmp_path):
    for value in ("1", "1.5", "-0.1"):
        assert_clean_error(run("train", "dit", tmp_path, "--vae", "v.pt", "--out", tmp_path / "x.pt", "--ema", value),
                           "Invalid value for '--ema'")
    # a bad --vae is the one line, without the warning that --ema 0.999 over 1 step would give on good inputs
    assert_clean_error(run("train", "dit", tmp_path, "--vae", "v.pt", "--out", tmp_path / "x.pt", "--steps", 1),
                       "v.pt: no such file or folder")


@pytest.mark.parametrize("stage", ["vae", "dit", "autodecode", "encoder"])
def test_train_refuses_an_unknown_precision(tmp_path, stage):
    res = run("train", stage, tmp_path, "--out", tmp_path / "x.pt", "--precision", "fp16")
    assert_clean_error(res, "precision must be one of auto, fp32, bf16")
    assert list(tmp_path.iterdir()) == []


def test_warnings_are_one_line(tmp_path):
    """A warning of nerv-rt's (here: --resume at another --precision) reads as its errors do, without Python's
    file:line and source line."""
    clips = tmp_path / "clips"
    made = run("data", "synth", "--out", clips, "--n", "1", "--res", "128", "-j", "1")
    assert made.returncode == 0 and made.stdout == f"{clips} (1 clips, 1 classes)\n", made.stdout
    fast = ("--batch", "1", "--frames-per-step", "2", "--gan-weight", "0", "--device", "cpu")
    assert run("train", "vae", clips, "--out", tmp_path / "v.pt", "--steps", "1", *fast).returncode == 0
    res = run("train", "vae", clips, "--out", tmp_path / "v.pt", "--steps", "2", "--resume", "--precision", "bf16", *fast)
    assert res.returncode == 0, res.stderr
    assert "warning: --resume: " in res.stderr and "it goes on with bf16" in res.stderr, res.stderr
    assert "UserWarning" not in res.stderr and "warnings.warn" not in res.stderr, res.stderr
    for other in (("--preset", "S"), ("--res", "256")):  # another model than the saved run's: one line, no traceback
        res = run("train", "vae", clips, "--out", tmp_path / "v.pt", "--steps", "3", "--resume", *other, *fast)
        assert_clean_error(res, "resume it with --preset tiny --res 128")


def test_other_libraries_deprecation_notices_are_not_shown():
    """torch.export raises FutureWarnings from inside torch that a user cannot act on; other warnings still show."""
    code = ("from nerv_rt.cli import _show_warning as show; where = '/site-packages/torch/utils/_pytree.py'; "
            "show(FutureWarning('LeafSpec is deprecated'), FutureWarning, where, 1); "
            "show(UserWarning('heads up'), UserWarning, where, 1)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "LeafSpec" not in res.stderr and "UserWarning: heads up" in res.stderr, res.stderr


def test_build_without_tensorrt_is_a_clear_error(tiny_export):
    from nerv_rt.export.trt_build import tensorrt_available

    if tensorrt_available():
        pytest.skip("tensorrt is installed here")
    assert_clean_error(run("build", tiny_export), "TensorRT is not installed")


def test_help_on_every_command():
    for cmd in ([], ["info"], ["export"], ["build"], ["generate"], ["bench"], ["train", "vae"], ["train", "dit"],
                ["train", "autodecode"], ["train", "encoder"], ["train", "classifier"], ["data", "synth"],
                ["reconstruct"], ["eval", "recon"], ["eval", "gen"], ["serve"]):
        res = run(*cmd, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout, (cmd, res.stderr)
        assert "<bool>" not in res.stdout, cmd  # flags take no value


def test_train_classifier_asks_where_to_write():
    """Without --out it wrote over the shipped judge inside the installed package, and `eval gen` read the new one."""
    assert_clean_error(run("train", "classifier", "--steps", "1"), "Missing option '--out'")


def test_an_interrupted_generate_says_which_videos_it_wrote(tmp_path):
    """Ctrl-C (SIGINT) after the first of 40 videos: exit 130, and one line naming the files written whole (each is
    written atomically, so the rest do not exist)."""
    import re
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "nerv_rt", "generate", "--n", "40", "--steps", "200", "--frames", "64",
                             "--out", str(tmp_path / "v.mp4")], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True,  # SIGINT as a terminal delivers it: a job started in the background ignores it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (tmp_path / "v-0.mp4").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    line = err.strip().splitlines()[-1]
    k = len(list(tmp_path.glob("v-*.mp4")))
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert 1 <= k < 40 and re.fullmatch(rf"interrupted: {k} of 40 videos written whole \(.*v-0.mp4( to .*v-{k - 1}.mp4)?\); "
                                        "none of the others", line), (k, line)


def test_generate_keeps_the_clip_duration(tmp_path, tiny_ckpt):
    """--frames 40 of a 16-frame model at its 8 fps: 40 frames in the same 2 s (20 fps); --fps overrides."""
    import av

    for args, rate in (([], 20), (["--fps", "5"], 5)):
        out = tmp_path / f"c{rate}.mp4"
        res = run("generate", "--model", tiny_ckpt, "--frames", 40, "--steps", 2, "--out", out, *args)
        assert res.returncode == 0, res.stderr
        with av.open(str(out)) as c:
            assert c.streams.video[0].average_rate == rate and c.streams.video[0].frames == 40


def test_generate_refuses_a_chunk_beyond_memory(tmp_path, tiny_ckpt):
    from nerv_rt.models.presets import preset
    from nerv_rt.runtime.memory import BUDGET_SHARE, available_bytes, decoder_bytes_per_frame

    if 4096 * decoder_bytes_per_frame(preset("tiny", 128)) <= BUDGET_SHARE * available_bytes():
        pytest.skip("this machine has the memory for one 4096-frame decoder call")
    out = tmp_path / "x.mp4"
    res = run("generate", "--model", tiny_ckpt, "--frames", 4096, "--chunk", 4096, "--out", out)
    assert_clean_error(res, "one decoder call of --chunk 4096 frames at 128^2 needs about")
    assert not out.exists()


@pytest.mark.parametrize("args, hidden, extra", [(["export", "default"], "onnx", "export"),
                                                  (["data", "synth", "--n", "1"], "scipy", "train"),
                                                  (["bench", "--quick"], "diffusers", "bench")])
def test_missing_extra_is_one_clear_line(tmp_path, args, hidden, extra):
    from nerv_rt.errors import pip_install

    res = run(*args, "--out", tmp_path / "o", without=(hidden,))
    assert_clean_error(res, pip_install(extra))
    assert not (tmp_path / "o").exists()
