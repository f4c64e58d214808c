"""`nerv-rt bench`: quick run output, the memory probe, argument errors."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from nerv_rt.bench.memory import run_in_child
from tests.test_cli import assert_clean_error, run


def allocate(mb: int) -> int:
    """Touch `mb` MiB in a child process (module-level: the spawned child imports it)."""
    block = np.ones(mb * 2**20, np.uint8)
    return int(block[:: 1 << 16].sum())


@pytest.mark.parametrize("mb", [64, 256])
def test_memory_probe_measures_a_known_allocation(mb):
    result, peak = run_in_child(allocate, imports=("numpy",), mb=mb)
    assert result == mb * 16
    assert mb * 0.97 <= peak / 2**20 <= mb * 1.1 + 8


def test_nvml_peak_counts_what_the_block_holds_at_its_end(monkeypatch):
    """NvmlPeak against a stand-in NVML: a sample after the block, so memory taken just before its end counts
    (with a 10 s period, the thread samples only at its start and after the block)."""
    import os
    import sys
    import types

    from nerv_rt.bench.memory import NvmlPeak

    used = {"device": 1000, "process": 300}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None, nvmlShutdown=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "gpu0",
        nvmlDeviceGetHandleByUUID=lambda u: "gpu0", nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=used["device"]),
        nvmlDeviceGetComputeRunningProcesses=lambda h: [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=used["process"])])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with NvmlPeak(period_s=10) as nvml:
        time.sleep(0.2)  # the first sample, at the levels of the start
        used.update(device=1000 + 2**20, process=300 + 2**21)
    assert nvml.result() == {"nvml_device_delta_peak_mb": 1.0, "nvml_process_peak_mb": (300 + 2**21) / 2**20,
                             "nvml_process_delta_peak_mb": 2.0}


def start_a_server_and_hang(pid_file: str) -> None:
    """Start a process in a session of its own, as serve_load.Server does, then hang where no `finally` of ours
    could stop it (a server that never comes up, requests still in flight)."""
    import subprocess
    import time

    from nerv_rt.bench.memory import OWN_SESSIONS

    server = subprocess.Popen(["sleep", "600"], start_new_session=True)
    OWN_SESSIONS.add(server.pid)
    Path(pid_file).write_text(str(server.pid))
    time.sleep(600)


def test_a_timed_out_child_stops_the_servers_it_started(tmp_path):
    """A SIGKILL of the step's process group alone left `nerv-rt serve` and its Ray cluster running after a timed-out
    gpu_check step: the server is in a session of its own."""
    pid_file = tmp_path / "server.pid"
    with pytest.raises(TimeoutError):
        run_in_child(start_a_server_and_hang, timeout=15, pid_file=str(pid_file))
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _running(pid):
        assert time.monotonic() < deadline, "the server outlived the timed-out child"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie has stopped
    except FileNotFoundError:
        return False


def test_a_server_that_exits_at_start_is_a_clear_error():
    """Seen on the H200 (no ray there): the server exited at once, and stopping its gone process group raised
    ProcessLookupError instead of saying why it did not come up."""
    from nerv_rt.bench.serve_load import Server

    with pytest.raises(RuntimeError, match=r"did not come up \(exit code 2\).*no-such-option"):
        with Server(["--no-such-option"], startup_s=60):
            pass


def test_bench_quick_writes_json_markdown_and_plot(tmp_path):
    res = run("bench", "--quick", "--suite", "all", "--out", tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["machine"]["device"] == "cpu" and doc["config"]["quick"] is True
    models = {r["model"] for r in doc["decoder"]}
    assert models == {"SD-VAE", "NeRV-VAE-tiny"}
    for row in doc["decoder"] + doc["scaling"] + doc["generator"]:
        assert row["latency_s"]["median"] > 0 and row["memory"]["peak_mb"] > 0
    assert {r["protocol"] for r in doc["generator"]} == {"paper", "fast"}
    assert "latency_ratio_128" in doc["decoder_ratios"]
    md = (tmp_path / "results.md").read_text()
    assert "paper A6000" in md and "| SD-VAE | 128 |" in md
    assert "Quick run (reduced SD-VAE, NeRV tiny, 4 frames)" in md  # the preset measured (--preset S says S)
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args,pattern", [(["--suite", "nope"], "unknown suite"),
                                          (["--device", "cuda"], "no CUDA GPU"),
                                          (["--precision", "bf16"], "CPU benchmarks run fp32"),
                                          (["--precision", "int4"], "unknown precision"),
                                          (["--scaling-frames", "a,b"], "comma-separated"),
                                          (["--backend", "tvm"], "unknown backend 'tvm'"),
                                          (["--backend", "tensorrt"], "needs --device cuda"),
                                          (["--preset", "XX"], "unknown preset 'XX'"),
                                          (["--res", "64"], "--res 64: presets exist at 128, 256")])
def test_bench_bad_arguments(tmp_path, args, pattern):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = run("bench", "--quick", *args, "--out", tmp_path / "o")
    assert_clean_error(res, pattern)
    assert not (tmp_path / "o").exists()


def test_bench_model_is_checked_before_any_child(tmp_path, tiny_ckpt):
    """A bad --model was a child process's traceback (exit 1), after an empty results folder was made."""
    from nerv_rt import checkpoint

    vae_only = tmp_path / "vae.pt"
    ckpt = checkpoint.load(tiny_ckpt)
    checkpoint.save(checkpoint.Checkpoint(ckpt.config, ckpt.vae, None, None, ckpt.token_std), vae_only)
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("nerv-rt-bench-quick-*"))  # where --quick writes without --out
    for model, pattern in ((tmp_path / "nofile.pt", "nofile.pt: no such file or folder"),
                           (vae_only, "no DiT in this checkpoint; the generator suite samples with one")):
        assert_clean_error(run("bench", "--quick", "--suite", "generator", "--model", model), pattern)
    assert set(Path(tempfile.gettempdir()).glob("nerv-rt-bench-quick-*")) == before


def raise_nerv_error() -> None:
    from nerv_rt.errors import CheckpointError

    raise CheckpointError("m.pt: truncated")


def raise_config_error() -> None:
    from nerv_rt.errors import ConfigError, option

    raise ConfigError(f"{option('refine_steps')} must be >= 0")


def test_a_child_s_nerv_error_is_the_parent_s():
    """As its class, with the parent's way of naming settings (--flags under the CLI)."""
    from nerv_rt.errors import ON_COMMAND_LINE, CheckpointError, ConfigError

    with pytest.raises(CheckpointError, match=r"^m.pt: truncated$"):
        run_in_child(raise_nerv_error)
    with pytest.raises(ConfigError, match=r"^refine_steps must be >= 0$"):
        run_in_child(raise_config_error)
    token = ON_COMMAND_LINE.set(True)
    try:
        with pytest.raises(ValueError, match=r"^--refine-steps must be >= 0$"):  # a ConfigError is a ValueError too
            run_in_child(raise_config_error)
    finally:
        ON_COMMAND_LINE.reset(token)


def test_bench_out_must_be_a_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    assert_clean_error(run("bench", "--quick", "--out", tmp_path / "notes.txt"), "is a file; bench writes a folder")
    assert (tmp_path / "notes.txt").read_text() == "keep"
