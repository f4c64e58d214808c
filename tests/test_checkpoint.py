"""Checkpoint round trips (.pt and save_pretrained) and every kind of bad file."""
import json
import sys

import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.errors import CheckpointError
from tests.conftest import random_checkpoint


def _equal(a: ckpt_io.Checkpoint, b: ckpt_io.Checkpoint) -> None:
    assert a.config == b.config
    for part in ("vae", "dit"):
        sa, sb = getattr(a, part), getattr(b, part)
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    assert torch.equal(a.token_std, b.token_std)


def test_pt_round_trip_is_bit_exact(tmp_path):
    ck = random_checkpoint()
    ckpt_io.save(ck, tmp_path / "a.pt")
    _equal(ck, ckpt_io.load(tmp_path / "a.pt"))


def test_save_pretrained_round_trip_is_bit_exact(tmp_path):
    ck = random_checkpoint()
    ckpt_io.save_pretrained(ck, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]
    back = ckpt_io.load(tmp_path / "model")
    _equal(ck, back)
    assert back.ema is None


def test_models_build_from_loaded_checkpoint(tmp_path):
    ck = random_checkpoint()
    ckpt_io.save(ck, tmp_path / "a.pt")
    vae, dit = ckpt_io.build_models(ckpt_io.load(tmp_path / "a.pt"))
    assert not vae.training and dit is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_has_dit_reads_no_weights(tmp_path):
    """`bench` and `info` ask has_dit of a checkpoint before anything loads it: the file is mapped, not read (the
    process grows by far less than the checkpoint's 400 MB)."""
    import subprocess

    ck = random_checkpoint()
    big = ckpt_io.Checkpoint(config=ck.config, vae={**ck.vae, "ballast": torch.zeros(100_000_000)}, dit=ck.dit)
    ckpt_io.save(big, tmp_path / "big.pt")
    ckpt_io.save(ckpt_io.Checkpoint(config=ck.config, vae=ck.vae), tmp_path / "vae.pt")
    # the peak RSS of this process image (VmHWM; getrusage's ru_maxrss would include the forking test process's)
    code = ("import re, sys\nfrom nerv_rt.checkpoint import has_dit\n"
            "peak = lambda: int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
            "has_dit(sys.argv[2])\nbefore = peak()\nanswer = has_dit(sys.argv[1])\nprint(answer, (peak() - before) // 1024)")
    res = subprocess.run([sys.executable, "-c", code, tmp_path / "big.pt", tmp_path / "vae.pt"], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    answer, grown_mb = res.stdout.split()
    assert answer == "True" and int(grown_mb) < 100, res.stdout
    assert not ckpt_io.has_dit(tmp_path / "vae.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        ckpt_io.has_dit(tmp_path / "nope.pt")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        ckpt_io.load(tmp_path / "nope.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a nerv-rt checkpoint"):
        ckpt_io.load(tmp_path / "text.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no format marker"):
        ckpt_io.load(tmp_path / "foreign.pt")


def test_truncated(tmp_path):
    ckpt_io.save(random_checkpoint(), tmp_path / "a.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt_io.load(tmp_path / "cut.pt")
    ckpt_io.save_pretrained(random_checkpoint(), tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt_io.load(tmp_path / "m")


def test_missing_and_extra_keys(tmp_path):
    ck = random_checkpoint()
    key = next(iter(ck.vae))
    del ck.vae[key]
    with pytest.raises(CheckpointError, match="missing keys"):
        ckpt_io.build_models(ck)
    ck = random_checkpoint()
    ck.dit["stray.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected keys: stray.weight"):
        ckpt_io.build_models(ck)


def test_config_weights_shape_mismatch(tmp_path):
    ckpt_io.save_pretrained(random_checkpoint(), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["token_dim"] = 8  # config no longer matches the stored weights
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="config and weights do not match"):
        ckpt_io.build_models(ckpt_io.load(tmp_path / "m"))


def test_newer_version_is_refused(tmp_path):
    d = random_checkpoint().to_dict()
    d["version"] = 99
    torch.save(d, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer"):
        ckpt_io.load(tmp_path / "new.pt")


def test_version_1_files_load_as_eps_models(tmp_path):
    """Files from before dit.prediction (format version 1) were eps models; they still load, as such."""
    d = random_checkpoint().to_dict()
    assert d["version"] == 2 and d["config"]["dit"]["prediction"] == "v"
    d["version"] = 1
    del d["config"]["dit"]["prediction"]
    torch.save(d, tmp_path / "old.pt")
    assert ckpt_io.load(tmp_path / "old.pt").config.dit.prediction == "eps"


def test_interrupted_save_leaves_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "a.pt"
    ckpt_io.save(random_checkpoint(seed=1), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt_io.save(random_checkpoint(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_library_errors_become_short_reasons():
    from nerv_rt.errors import reason

    long = "Weights only load failed. In PyTorch 2.6, we changed the default value of weights_only.\nTraceback ..."
    assert reason(Exception(long)) == "Weights only load failed."
    assert reason(ValueError()) == "ValueError"
    assert reason(KeyError(101)) == "KeyError 101"  # torch.load of a text file: the bare key alone says nothing
    assert reason(KeyError("model")) == "KeyError 'model'"
    assert reason(RuntimeError("слово " * 60), limit=30) == "слово слово слово слово слово ..."  # any script is cut
    assert reason(TypeError("Expected e.g. a tensor of floats")) == "Expected e.g. a tensor of floats"  # no sentence
    cut = reason(RuntimeError("word " * 40), limit=22)
    assert cut == "word word word word ..."  # whole words
