"""AOTInductor packages (`nerv-rt export --aoti`) and the aoti backend on this CPU: round trip, parity against eager
torch, refusal of a package built elsewhere, generate end to end. The packages are compiled once per session."""
import json
import shutil

import numpy as np
import pytest
import torch

from nerv_rt.engines.select import resolve_backend
from nerv_rt.errors import NervError
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sources import resolve
from tests.test_cli import read_frames, run


def test_export_writes_keyed_validated_packages(tiny_aoti_export):
    manifest = json.loads((tiny_aoti_export / "manifest.json").read_text())
    packages = manifest["aoti"]
    assert sorted(packages) == ["decoder.cpu.pt2", "dit.cpu.pt2", "encoder.cpu.pt2"]
    for file, e in packages.items():
        assert (tiny_aoti_export / file).is_file() and len(e["sha256"]) == 64
        assert e["key"]["torch"] == torch.__version__ and e["key"]["device"] == "cpu" and e["key"]["cpu"]
    assert packages["decoder.cpu.pt2"]["validation"]["psnr_db"] >= 60
    assert packages["dit.cpu.pt2"]["validation"]["max_abs_err"] < 1e-4


def test_aoti_matches_eager_torch_and_auto_prefers_it(tiny_ckpt, tiny_aoti_export):
    assert resolve_backend("auto", resolve(tiny_aoti_export)[0], "cpu") == "aoti"
    aoti = Pipeline.load(tiny_aoti_export, backend="aoti")
    eager = Pipeline.load(tiny_ckpt, backend="torch")
    kw = dict(n=2, steps=4, seed=2, guidance=3.0)
    torch.testing.assert_close(aoti.sample_tokens(**kw), eager.sample_tokens(**kw), atol=1e-4, rtol=1e-4)
    a, b = aoti.generate(frames=7, **kw), eager.generate(frames=7, **kw)
    assert np.abs(a.astype(int) - b).max() <= 1
    video = eager.decode(eager.sample_tokens(steps=2), frames=16)
    np.testing.assert_allclose(aoti.encode(video), eager.encode(video, refine_steps=0), atol=1e-4)


def test_a_package_built_elsewhere_is_refused(tmp_path, tiny_aoti_export):
    copy = tmp_path / "moved"
    shutil.copytree(tiny_aoti_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["aoti"]["dit.cpu.pt2"]["key"]["torch"] = "2.0.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert resolve_backend("auto", resolve(copy)[0], "cpu") == "onnxruntime"  # auto passes it over
    pipe = Pipeline.load(copy, backend="aoti")
    with pytest.raises(NervError, match=r"compiled for torch 2\.0\.0 .*export again on this machine with `nerv-rt export"):
        pipe.sample_tokens(steps=1)
    with pytest.raises(NervError, match="no fp16 AOTInductor package"):
        Pipeline.load(tiny_aoti_export, backend="aoti", precision="fp16").sample_tokens(steps=1)


def test_generate_with_the_aoti_backend(tmp_path, tiny_aoti_export):
    res = run("generate", "--model", tiny_aoti_export, "--backend", "aoti", "--frames", 5, "--steps", 3,
              "--out", tmp_path / "c.mp4")
    assert res.returncode == 0, res.stderr
    assert "aoti on cpu" in res.stderr and read_frames(tmp_path / "c.mp4")[0] == 5


def test_missing_packages_say_where_the_export_goes(tiny_export):
    with pytest.raises(NervError, match=r"nerv-rt export default --aoti --device cpu` and load the folder it writes "
                                        r"\(engines/default\)"):
        Pipeline.load("default", backend="aoti", device="cpu")
    with pytest.raises(NervError, match=r"nerv-rt export \S+\.pt --aoti --device cpu` and load the folder it writes"):
        Pipeline.load(tiny_export, backend="aoti", device="cpu")  # graphs alone: the checkpoint they came from
