"""The command line end to end on tiny models: outputs, one-line errors with exit code 2, no partial files."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
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
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in res.stderr


def read_frames(path: Path):
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape


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
    assert_clean_error(run("export", tiny_export, "--out", tmp_path / "o"), "already an export folder")
    assert not (tmp_path / "o").exists()


def test_build_without_tensorrt_is_a_clear_error(tiny_export):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert_clean_error(run("build", tiny_export), "TensorRT is not installed")


def test_help_on_every_command():
    for cmd in ([], ["info"], ["export"], ["build"], ["generate"], ["bench"], ["train", "vae"], ["train", "dit"],
                ["data", "synth"], ["reconstruct"], ["eval", "recon"]):
        res = run(*cmd, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout, (cmd, res.stderr)


@pytest.mark.parametrize("args, hidden, extra", [(["export", "default"], "onnx", "export"),
                                                  (["data", "synth", "--n", "1"], "scipy", "train"),
                                                  (["bench", "--quick"], "diffusers", "bench")])
def test_missing_extra_is_one_clear_line(tmp_path, args, hidden, extra):
    res = run(*args, "--out", tmp_path / "o", without=(hidden,))
    assert_clean_error(res, f'pip install "nerv-rt[{extra}]"')
    assert not (tmp_path / "o").exists()
