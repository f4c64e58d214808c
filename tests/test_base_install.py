"""The base install (README command 1: numpy, onnxruntime, the CLI and video writing; no torch, no extras) runs
the deploy path: generate, info, reconstruct and eval recon on the embedded default (which ships its graphs) and
on an export folder. Everything else says in one line which extra to install. Each command runs in a subprocess
where the extras' modules cannot be imported (nor click, which typer >= 0.20 vendors)."""
import json

import pytest

from nerv_rt.errors import EXTRA_OF
from tests.test_cli import assert_clean_error, read_frames, run

BASE_ONLY = (*(m for m, extra in EXTRA_OF.items() if extra), "pytest", "click")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    res = run("data", "synth", "--out", d, "--n", 2, "--seed", 4)  # made with the train extra, read without it
    assert res.returncode == 0, res.stderr
    return d


@pytest.mark.parametrize("model", ["default", "export"])
def test_base_install_runs_the_deploy_path(tmp_path, clips, tiny_export, model):
    model = "default" if model == "default" else str(tiny_export)
    res = run("generate", "--model", model, "--frames", 4, "--steps", 3, "--out", tmp_path / "c.mp4", without=BASE_ONLY)
    assert res.returncode == 0, res.stderr
    assert read_frames(tmp_path / "c.mp4")[0] == 4 and "onnxruntime on cpu" in res.stderr
    res = run("info", model, "--json", without=BASE_ONLY)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert {d["res"] for d in (info if isinstance(info, list) else [info])} == ({128, 256} if model == "default" else {128})
    clip = next(clips.rglob("*.mp4"))
    res = run("reconstruct", clip, "--model", model, "--out", tmp_path / "sbs.mp4", without=BASE_ONLY)
    assert res.returncode == 0, res.stderr
    assert "| 0 refinement steps | the first 16 frames, shorter side resized to 128" in res.stderr  # no autograd on ORT
    assert read_frames(tmp_path / "sbs.mp4")[1] == (128, 256, 3)
    res = run("eval", "recon", clips, "--model", model, "--json", without=BASE_ONLY)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["clips"] == 2 and r["refine_steps"] == 0 and r["backend"].startswith("onnxruntime") and r["psnr"] > 0


def test_info_without_arguments_describes_the_default_model():
    res = run("info", "--json", without=BASE_ONLY)
    assert res.returncode == 0, res.stderr
    assert [(d["preset"], d["res"]) for d in json.loads(res.stdout)] == [("tiny", 128), ("tiny", 256)]


def test_python_api_picks_onnxruntime_without_torch():
    import subprocess
    import sys

    from tests.test_cli import HIDE_MODULES, ROOT

    code = HIDE_MODULES.format(hidden=set(BASE_ONLY)) + (
        "import sys, nerv_rt\npipe = nerv_rt.Pipeline.load('default')\n"
        "video = pipe.generate(frames=3, steps=2)\nassert video.shape == (1, 3, 128, 128, 3)\n"
        "assert 'torch' not in sys.modules\nprint(pipe.describe())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "onnxruntime on cpu, fp32"


def test_python_api_without_torch_names_the_extra_for_a_checkpoint(tmp_path):
    import subprocess
    import sys

    from nerv_rt import checkpoint as ckpt_io
    from tests.conftest import random_checkpoint
    from tests.test_cli import HIDE_MODULES, ROOT

    ckpt_io.save(random_checkpoint(), tmp_path / "x.pt")  # a real one: a file that is not torch's is refused as such
    code = HIDE_MODULES.format(hidden=set(BASE_ONLY)) + (
        f"import nerv_rt\ntry:\n    nerv_rt.Pipeline.load({str(tmp_path / 'x.pt')!r})\n"
        "except nerv_rt.NervError as e:\n    print(e)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    from nerv_rt.errors import CPU_TORCH, pip_install
    from nerv_rt.machine import nvidia_driver

    first = "" if nvidia_driver() else f"{CPU_TORCH} && "  # no GPU here: not the multi-GB CUDA build
    assert res.stdout.strip() == (f"this needs torch, which is not installed: {first}"
                                  f"{pip_install('torch')}")


def test_auto_backend_leaves_torch_unimported_without_an_nvidia_driver():
    import subprocess
    import sys

    from nerv_rt.machine import nvidia_driver
    from tests.test_cli import ROOT

    if nvidia_driver():
        pytest.skip("an NVIDIA driver is present: auto asks torch for a GPU")
    code = ("import sys, nerv_rt\npipe = nerv_rt.Pipeline.load('default')\npipe.generate(frames=2, steps=2)\n"
            "print(pipe.describe(), 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)  # torch installed
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "onnxruntime on cpu, fp32 False"


@pytest.mark.parametrize("args,extra", [(["export", "default"], "export"), (["info", "--preset", "L"], "torch"),
                                        (["generate", "--backend", "torch"], "torch"), (["eval", "gen"], "train"),
                                        (["train", "classifier", "--out", "c"], "train"),
                                        (["train", "vae", "x", "--out", "x.pt", "--precision", "bf16"], "train"),
                                        (["train", "dit", "x", "--vae", "v.pt", "--out", "x.pt"], "train"), (["data", "synth", "--out", "x"], "train"),
                                        (["bench", "--quick"], "bench")])
def test_base_install_names_the_extra_for_the_rest(tmp_path, args, extra):
    from nerv_rt.errors import pip_install

    res = run(*args, cwd=tmp_path, without=BASE_ONLY)
    assert_clean_error(res, pip_install(extra))
    assert list(tmp_path.iterdir()) == []


class _Installed:
    """A stand-in distribution whose direct_url.json (PEP 610) is `record`."""

    def __init__(self, record: dict | None):
        self.record = record

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.record) if name == "direct_url.json" and self.record is not None else None


@pytest.mark.parametrize("record, command", [
    ({"url": "file://{tmp}", "dir_info": {}}, 'python -m pip install "{tmp}[torch]"'),  # pip install . of a checkout
    ({"url": "file://{tmp}", "dir_info": {"editable": True}}, 'python -m pip install -e "{tmp}[torch]"'),  # -e .
    ({"url": "file://{tmp}/my%20checkout", "dir_info": {}}, 'python -m pip install "{tmp}/my checkout[torch]"'),
    ({"url": "file://{tmp}/gone", "dir_info": {}}, 'python -m pip install "nerv-rt[torch]"'),  # moved away since
    ({"url": "file://{tmp}/nerv_rt-0.1.0-py3-none-any.whl", "archive_info": {}},
     'python -m pip install "nerv-rt[torch]"'),  # a wheel
    ({"url": "file://{tmp}", "dir_info": "?"}, 'python -m pip install "nerv-rt[torch]"'),  # a record not as PEP 610's
    (None, 'python -m pip install "nerv-rt[torch]"')])  # from a package index
def test_the_install_hint_names_where_nerv_rt_was_installed_from(tmp_path, monkeypatch, record, command):
    import importlib.metadata

    from nerv_rt.errors import pip_install

    (tmp_path / "my checkout").mkdir()
    fill = lambda v: json.loads(json.dumps(v).replace("{tmp}", str(tmp_path)))  # noqa: E731
    found = [_Installed(None), _Installed(fill(record))]  # a checkout's egg-info without the record comes first
    monkeypatch.setattr(importlib.metadata, "distributions", lambda name: iter(found))
    assert pip_install("torch") == fill(command)
