"""scripts/gpu_check.sh cannot rot between GPU windows: its dry run (the same steps on the CPU at tiny size) runs
here, and the target arithmetic is checked on made-up figures."""
import json
import subprocess
import sys
import time

import pytest
import torch

from nerv_rt.bench.gpu_check import STEPS, TARGETS, step_status, targets
from tests.test_cli import ROOT


def test_dry_run_runs_every_step(tmp_path):
    t0 = time.perf_counter()
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert time.perf_counter() - t0 < 90 * 2  # the 90 s, with room for a loaded CI machine
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {k: v["status"] for k, v in doc["steps"].items()} == dict.fromkeys(STEPS, "ok")
    steps = {k: v["result"] for k, v in doc["steps"].items()}
    assert steps["env"]["cuda_available"] is False and "onnxruntime_providers" in steps["env"]
    assert steps["pytest"]["exit_code"] in (0, 5) and steps["pytest"].get("failed", 0) == 0
    assert {r["model"] for r in steps["decoder"]["rows"]} == {"SD-VAE", "NeRV-VAE-tiny"}
    assert {r["protocol"] for r in steps["generator"]["rows"]} == {"paper", "fast"}
    assert all(r["sample_s"]["median"] > 0 and r["decode_s"]["median"] > 0 for r in steps["generator"]["rows"])
    assert [r["frames"] for r in steps["memory"]["rows"]] == [4, 16]
    assert doc["targets"] == []  # a dry run is held to no paper target
    md = (tmp_path / "results.md").read_text()
    assert "DRY RUN" in md and "## Decoder" in md and "## Whole-loop CUDA graph" in md


def test_skip_leaves_steps_out(tmp_path):
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path), "--skip", "pytest",
                          "decoder", "generator", "graph", "memory"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["steps"]["env"]["status"] == "ok" and doc["steps"]["memory"] == {"status": "skipped"}


def test_gpu_tests_collect_without_pyav_and_ray():
    """The GPU machines' image has neither (and their wheels are too big to carry): the first H200 run's `pytest -m gpu`
    stopped at 7 collection errors, every test module importing test_cli's `import av`."""
    code = ("import sys; sys.modules['av'] = sys.modules['ray'] = None; import pytest; "
            "sys.exit(pytest.main(['--collect-only', '-q', '-m', 'gpu', '-p', 'no:cacheprovider', 'tests']))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "error" not in res.stdout.splitlines()[-1], res.stdout[-2000:]


def test_rerun_runs_the_named_steps_and_keeps_the_rest(tmp_path):
    """A short GPU window reruns only what failed: the other steps' entries come from the earlier results.json."""
    earlier = {"config": {"dry_run": True, "device": "cpu", "precision": "fp32"},
               "steps": {"env": {"status": "ok", "result": {"old": True}},
                         "aoti": {"status": "timeout", "error": "step_aoti did not finish within 50 s"}}}
    (tmp_path / "results.json").write_text(json.dumps(earlier))
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path), "--rerun", "memory"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr  # the kept aoti timeout still counts
    steps = json.loads((tmp_path / "results.json").read_text())["steps"]
    assert steps["env"] == earlier["steps"]["env"] and steps["aoti"] == earlier["steps"]["aoti"]
    assert steps["memory"]["status"] == "ok" and steps["decoder"] == {"status": "skipped"}
    assert list(steps) == list(STEPS)


def test_rerun_keeps_the_earlier_results_on_disk_while_it_runs(tmp_path):
    """A window that ends in the middle of the rerun step must not lose what the earlier run measured."""
    from nerv_rt.bench.gpu_check import CheckConfig, run_check

    earlier = {"created": "then", "config": {"dry_run": True},
               "steps": {"decoder": {"status": "ok", "result": {"rows": []}}, "pytest": {"status": "ok",
                         "result": {"exit_code": 2, "summary": "7 errors", "failures": []}}}}
    seen = []

    def say(line):  # called just before a step starts: what is on disk then
        seen.append(json.loads((tmp_path / "results.json").read_text())["steps"])

    doc = run_check(CheckConfig.dry(), tmp_path, skip=tuple(s for s in STEPS if s != "env"), say=say, earlier=earlier)
    assert seen and seen[0]["decoder"] == earlier["steps"]["decoder"] and seen[0]["env"] == {"status": "pending"}
    assert doc["steps"]["pytest"]["status"] == "failed"  # re-judged: an older version recorded exit code 2 as ok
    assert doc["kept_from"] == {"created": "then", "config": {"dry_run": True}, "steps": ["decoder", "pytest"]}


def test_rerun_refuses_results_of_another_kind(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"config": {"dry_run": False, "device": "cuda",
                                                                  "precision": "bf16"}, "steps": {}}))
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path), "--rerun", "env"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "another kind of run" in res.stderr and "Traceback" not in res.stderr


def test_rerun_needs_an_earlier_result(tmp_path):
    res = subprocess.run(["bash", "scripts/gpu_check.sh", "--dry-run", "--out", str(tmp_path), "--rerun", "env"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "--rerun needs --out with the results.json" in res.stderr


def test_step_status():
    assert step_status({"rows": []}) == "ok"
    assert step_status({"not_run": "ray is not installed"}) == "skipped"
    assert step_status({"exit_code": 0, "skipped": 10}) == "ok"  # pytest's own count of skipped tests
    assert step_status({"exit_code": 5}) == "failed"  # no gpu test collected: the check checked nothing
    assert step_status({"exit_code": 2, "error": 7}) == "failed"  # the first H200 run: collection errors


def _doc(decoder_nerv: float, full_gen: float, graph_s: float) -> dict:
    # NVML charges the row run first (SD-VAE) the libraries' one-time set-up: the memory target reads the allocator
    row = lambda model, res, lat, mem: {"model": model, "res": res, "backend": "eager", "latency_s": {"median": lat},  # noqa: E731
                                        "memory_mb": {"allocator_peak_mb": 2 * mem,
                                                      "nvml_process_delta_peak_mb": 3 * mem if model == "SD-VAE" else mem}}
    ok = lambda result: {"status": "ok", "result": result}  # noqa: E731
    gen_rows = [{"res": 128, "protocol": "paper", "backend": "torch-cudagraph", "latency_s": {"median": full_gen},
                 "per_step_ms": 1.0},
                {"res": 128, "protocol": "fast", "backend": "torch-cudagraph", "latency_s": {"median": 0.1}, "per_step_ms": 1.1}]
    return {"config": {"dry_run": False}, "steps": {
        "decoder": ok({"rows": [row("SD-VAE", 128, 0.02, 100), row("NeRV-VAE-L", 128, 0.02 * decoder_nerv, 30),
                                row("SD-VAE", 256, 0.1, 1000), row("NeRV-VAE-L", 256, 0.02, 300)]}),
        "generator": ok({"rows": gen_rows, "bare_dit_forward_ms": {128: 1.0}}),
        "graph": ok({"rows": [{"preset": "S", "per_step_ms": {"torch": graph_s, "torch-cudagraph": 1.0}, "speedup": graph_s}]})}}


def test_targets_met_and_missed():
    good = {t["target"]: t["met"] for t in targets(_doc(0.4, 0.9, 3.5))}
    assert len(good) == len(TARGETS) and all(good.values()), good
    bad = {t["target"].rsplit(" ", 2)[0]: t for t in targets(_doc(0.5, 1.5, 2.0))}
    assert not bad["decoder latency NeRV-L / SD-VAE at 128^2"]["met"]
    assert not bad["full generation, L, 16 frames at 128^2, DDPM 250 + CFG (s)"]["met"]
    assert not bad["whole-loop graph speed-up per step, S"]["met"]
    assert bad["decoder memory NeRV-L / SD-VAE at 256^2"]["value"] == 0.3 and bad["decoder memory NeRV-L / SD-VAE at 256^2"]["met"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_without_a_gpu_it_still_writes_its_results(tmp_path):
    """From a device window only --out comes back: a machine whose torch sees no GPU (or cannot import) gets the
    environment recorded and the reason, not an empty folder; but never over an earlier run's results (nor with
    --rerun). A relative --out is the caller's, not the checkout's."""
    script = ["bash", str(ROOT / "scripts" / "gpu_check.sh")]
    res = subprocess.run([*script, "--out", "results"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "error: no CUDA GPU visible to torch" in res.stderr, res.stderr[-2000:]
    written = (tmp_path / "results" / "results.json").read_text()
    doc = json.loads(written)
    assert doc["error"].startswith("no CUDA GPU") and doc["steps"]["env"]["status"] == "ok"
    assert {k: v["status"] for k, v in doc["steps"].items() if k != "env"} == dict.fromkeys(STEPS[1:], "skipped")
    assert "**error: no CUDA GPU" in (tmp_path / "results" / "results.md").read_text()
    for args in (["--out", "results"], ["--out", "results", "--rerun", "decoder"]):  # an earlier run's results stay
        res = subprocess.run([*script, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and res.stderr.strip().endswith("error: no CUDA GPU visible to torch; use --dry-run on "
                                                                   "a CPU machine"), res.stderr[-2000:]
        assert (tmp_path / "results" / "results.json").read_text() == written
