"""The prepared GPU check: every GPU row of the paper's table in one run of `scripts/gpu_check.sh`.

Steps, in order, each in a child process with a time box (a step that hangs or crashes is recorded, the next
one runs); results.json / results.md are rewritten after every step, so what finished survives a cut-off:

  env        GPU, driver, CUDA, torch, TensorRT and ONNX Runtime's providers
  pytest     every test marked `gpu` (tests/test_gpu.py, the TensorRT build test)
  decoder    NeRV-L against SD-VAE, bf16, 16 frames at 128^2 and 256^2, eager and CUDA-graphed; latency by CUDA
             events, memory as the allocator's peak and NVML's per-process peak
  generator  NeRV-Diffusion-L (random init): paper protocol (DDPM 250, CFG 2) and DDIM 50, eager and the whole-loop
             CUDA graph, sampling and decoding timed apart, per step against one bare DiT forward at the CFG batch
  graph      whole-loop CUDA graph speed-up over eager per sampler step, presets S and L
  memory     16 against 128 frames at 256^2 through `Pipeline.render` (chunked), preset L
  serve      `nerv-rt serve` (the default model on the GPU) at concurrency 16, batching on and off
  aoti       AOTInductor packages compiled for the GPU (preset S, the DiT: its per-step time against torch)

`--dry-run` runs the same sequence on the CPU at tiny size (the test suite runs it, so it cannot rot between GPU
windows). Targets below are the issue's; the paper's A6000 figures stand in their own column.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NervError, install_command
from ..formats import atomic_write_text
from . import cases
from .memory import OWN_SESSIONS, run_in_child
from .suites import DECODER_MEMORY, PAPER_A6000, SD_VAE_LABEL, nerv_gmacs, paper_decoder, sd_vae_gmacs, summarize

STEPS = ("env", "pytest", "decoder", "generator", "graph", "memory", "serve", "aoti")
TIME_BOX_S = {"env": 15, "pytest": 110, "decoder": 40, "generator": 120, "graph": 30, "memory": 20, "serve": 75,
              "aoti": 120}  # 9 min in all (first H200 run: 6, 13, 25, >95, 16, 8, -, >50 s); aoti last: a compile
                            # that runs over costs no other step
ROOT = Path(__file__).resolve().parents[2]
PAPER_DECODER_RATIO = {128: 0.032 / 0.048, 256: 0.133 / 0.260}
TARGETS = {"decoder latency NeRV-L / SD-VAE at 128^2": ("<=", 0.45), "decoder latency NeRV-L / SD-VAE at 256^2": ("<=", 0.30),
           "decoder memory NeRV-L / SD-VAE at 256^2": ("<=", 0.35),
           "full generation, L, 16 frames at 128^2, DDPM 250 + CFG (s)": ("<=", 1.0),
           "whole-loop graph speed-up per step, S": (">=", 3.0),
           "captured step / bare DiT forward, L at 128^2": ("<=", 1.2)}
PAPER_FOR_TARGET = {"decoder latency NeRV-L / SD-VAE at 128^2": "0.67", "decoder latency NeRV-L / SD-VAE at 256^2": "0.51",
                    "decoder memory NeRV-L / SD-VAE at 256^2": "0.60",
                    "full generation, L, 16 frames at 128^2, DDPM 250 + CFG (s)": "6.8"}


@dataclass(frozen=True)
class CheckConfig:
    device: str = "cuda"
    precision: str = "bf16"
    decoder_preset: str = "L"
    graph_presets: tuple[str, ...] = ("S", "L")
    resolutions: tuple[int, ...] = (128, 256)
    frames: int = 16
    protocols: tuple[tuple[str, str, int], ...] = (("paper", "ddpm", 250), ("fast", "ddim", 50))
    warmup: int = 2
    repeats: int = 5
    generator_repeats: int = 3  # after 1 warm-up: eager DDPM 250 at L is seconds a run, and the step has 4 such rows
    quick_sd_vae: bool = False
    memory_frames: tuple[int, int] = (16, 128)
    serve_concurrency: int = 16
    serve_batching: tuple[bool, ...] = (True, False)
    aoti_graphs: tuple[str, ...] = ("dit",)  # export + compile of S's DiT and decoder took 116 s on the H200
    dry_run: bool = False
    time_box_s: dict[str, float] = field(default_factory=lambda: dict(TIME_BOX_S))

    @classmethod
    def dry(cls) -> CheckConfig:
        """The same sequence on the CPU at tiny size, in about a minute."""
        return cls(device="cpu", precision="fp32", decoder_preset="tiny", graph_presets=("tiny",), resolutions=(128,),
                   frames=4, protocols=(("paper", "ddpm", 6), ("fast", "ddim", 3)), warmup=1, repeats=1, generator_repeats=1,
                   quick_sd_vae=True, memory_frames=(4, 16), serve_concurrency=2, serve_batching=(True,),
                   dry_run=True)

    @property
    def graph(self) -> bool:
        return self.device == "cuda"  # CUDA graphs need a GPU; the dry run measures the eager rows only


# ---------------------------------------------------------------------------------------------
# Steps (module level: each runs in a spawned child)
# ---------------------------------------------------------------------------------------------

def step_env(cfg: CheckConfig) -> dict[str, Any]:
    import torch

    from ..export.trt_build import tensorrt_available
    from ..machine import cpu_name

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_name(),
                           "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, compute_capability=f"{p.major}.{p.minor}", gpu_memory_gb=round(p.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), multiprocessors=p.multi_processor_count)
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
            pynvml.nvmlShutdown()
        except Exception as e:  # NVML missing or refused: say so, keep going
            env["driver"] = f"unknown ({type(e).__name__})"
    if tensorrt_available():
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    import onnxruntime

    env["onnxruntime"] = onnxruntime.__version__
    env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return env


def step_pytest(cfg: CheckConfig) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess of its own session, stopped (with everything it started) before the step's
    time box so that nothing of it runs on during the benchmarks; counts from its summary line."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rA", "--durations=5", "-p", "no:cacheprovider",
                             str(ROOT / "tests")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)
    OWN_SESSIONS.add(proc.pid)  # SIGTERMed with the step if the step runs out of time
    try:
        output, _ = proc.communicate(timeout=cfg.time_box_s["pytest"] - 15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        output += "\npytest stopped at the time box"
    finally:
        OWN_SESSIONS.discard(proc.pid)
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else ""
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", summary)}
    failures = [ln.split(" ", 1)[1] for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    outcomes = [ln for ln in lines if ln.startswith(("PASSED", "SKIPPED", "FAILED", "ERROR"))]  # -rA: each test by name
    tail = lines[-60:] if proc.returncode != 0 else []  # what went wrong (step_status's rule), for a run whose machine is gone
    return {"exit_code": proc.returncode, "summary": summary, **counts, "failures": failures, "outcomes": outcomes,
            "tail": tail}


def _decoder_case(model: str, res: int, cfg: CheckConfig, cuda_graph: bool) -> dict[str, Any]:
    common: dict[str, Any] = dict(res=res, frames=cfg.frames, device=cfg.device, precision=cfg.precision, warmup=cfg.warmup,
                  repeats=cfg.repeats, cuda_graph=cuda_graph)
    if model == SD_VAE_LABEL:
        r = cases.sd_vae_decoder(quick=cfg.quick_sd_vae, **common)
        gmacs = sd_vae_gmacs(res, cfg.frames, cfg.quick_sd_vae)
    else:
        r = cases.nerv_decoder(cfg.decoder_preset, **common)
        gmacs = nerv_gmacs(cfg.decoder_preset, res, cfg.frames)
    return {"model": model, "res": res, "backend": "cuda-graph" if cuda_graph else "eager", "gmacs": gmacs,
            "latency_s": summarize(r.pop("times")), "memory_mb": r}


def step_decoder(cfg: CheckConfig) -> dict[str, Any]:
    rows = [_decoder_case(model, res, cfg, graph)
            for res in cfg.resolutions for graph in ((False, True) if cfg.graph else (False,))
            for model in (SD_VAE_LABEL, f"NeRV-VAE-{cfg.decoder_preset}")]
    return {"rows": rows}


def random_pipeline(preset_name: str, res: int, backend: str, cfg: CheckConfig):
    """A random-init preset built on the device (no checkpoint file: L is 3 GB in fp32): latency and memory do not
    depend on trained weights."""
    import torch

    from ..engines.torch_backend import TorchBackend
    from ..models.dit import ImplicitDiT
    from ..models.graphs import DecoderGraph, DiTGraph
    from ..models.nerv import NeRVDecoder
    from ..models.presets import preset
    from ..runtime.pipeline import Pipeline
    from ..runtime.sources import ModelSource

    config = preset(preset_name, res)
    torch.manual_seed(0)
    with torch.device(cfg.device):
        graphs = {"dit": DiTGraph(ImplicitDiT(config)).eval(), "decoder": DecoderGraph(NeRVDecoder(config)).eval()}
    source = ModelSource(f"random {preset_name}", Path(f"random-{preset_name}-{res}"), config)
    be = TorchBackend(source, cfg.device, cfg.precision, capture=backend == "torch-cudagraph", graphs=graphs)
    return Pipeline.from_backend(source, be)


def _per_step_ms(pipe, steps: int, sampler: str, cfg: CheckConfig, full_s: float | None = None) -> float:
    """One sampler step, from the slope between sampling `steps` and steps // 5 steps: a run's fixed costs (the
    initial noise, the coefficient table, the final scaling) cancel; DDPM's per-step noise, drawn on the host as one
    (steps, N, d) array, grows with the step count and stays in. `full_s`: the median time of `steps` already
    measured (then only the short run is timed)."""
    if steps < 2:
        raise ValueError(f"a per-step slope needs at least 2 steps, got {steps}")

    def sample_s(n: int) -> float:
        run = lambda: (pipe.sample_tokens(steps=n, sampler=sampler, guidance=2.0, seed=0), pipe.synchronize())  # noqa: E731
        return float(np.median(cases.time_runs(run, cfg.device, cfg.warmup, cfg.repeats)))

    few = max(1, steps // 5)
    full = sample_s(steps) if full_s is None else full_s
    return 1000 * (full - sample_s(few)) / (steps - few)


def _generation(pipe, frames: int, steps: int, sampler: str, cfg: CheckConfig) -> dict[str, Any]:
    """Sampling and decoding of one video timed apart (`cases.timed_generation`) and one sampler step (`_per_step_ms`)."""
    r = cases.timed_generation(cases.already_made(pipe), cfg.device, frames, steps, sampler, 2.0, cfg.warmup, cfg.repeats)
    sample, decode = r.pop("sample_times"), r.pop("decode_times")
    return {"latency_s": summarize(r.pop("times")), "sample_s": summarize(sample), "decode_s": summarize(decode),
            "per_step_ms": _per_step_ms(pipe, steps, sampler, cfg, float(np.median(sample))), "memory_mb": r}


def step_generator(cfg: CheckConfig) -> dict[str, Any]:
    rows, bare = [], {}
    preset_name = cfg.graph_presets[-1]
    cfg = replace(cfg, warmup=1, repeats=cfg.generator_repeats)
    for res in cfg.resolutions:
        r = cases.dit_forward(preset_name, res, cfg.device, cfg.precision, cfg.warmup, 20 * cfg.repeats, cuda_graph=cfg.graph)
        bare[res] = 1000 * float(np.median(r["times"]))
        for backend in ("torch", "torch-cudagraph") if cfg.graph else ("torch",):
            pipe = random_pipeline(preset_name, res, backend, cfg)
            for name, sampler, steps in cfg.protocols:
                row = _generation(pipe, cfg.frames, steps, sampler, cfg)
                rows.append({"model": f"NeRV-Diffusion-{preset_name}", "backend": backend, "res": res, "protocol": name,
                             "sampler": sampler, "steps": steps, **row})
                print(f"  generator {res}^2 {backend} {name}: {row['latency_s']['median']:.3f} s", flush=True)
            del pipe
    return {"rows": rows, "bare_dit_forward_ms": bare}


def step_graph(cfg: CheckConfig) -> dict[str, Any]:
    """Per sampler step, DDIM 50 with CFG at 128^2: eager against the whole-loop CUDA graph."""
    rows = []
    _, sampler, steps = cfg.protocols[-1]
    for preset_name in cfg.graph_presets:
        per_step = {}
        for backend in ("torch", "torch-cudagraph") if cfg.graph else ("torch",):
            pipe = random_pipeline(preset_name, cfg.resolutions[0], backend, cfg)
            per_step[backend] = _per_step_ms(pipe, steps, sampler, cfg)
            del pipe
        speedup = per_step["torch"] / per_step["torch-cudagraph"] if "torch-cudagraph" in per_step else None
        rows.append({"preset": preset_name, "per_step_ms": per_step, "speedup": speedup})
    return {"rows": rows}


def _render(pipe, frames: int, out: str, cfg: CheckConfig) -> dict[str, Any]:
    tokens = pipe.sample_tokens(steps=2, seed=0)
    return cases.measured(cases.already_made(functools.partial(pipe.render, tokens, out, frames=frames, chunk=16)),
                          cfg.device, 0, 1)


def step_memory(cfg: CheckConfig) -> dict[str, Any]:
    """Rendering 16 and then 128 frames at 256^2 into PNG folders, 16 frames per decoder call."""
    import tempfile

    res = cfg.resolutions[-1]
    pipe = random_pipeline(cfg.decoder_preset, res, "torch", cfg)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nerv-gpu-check-") as tmp:
        for frames in cfg.memory_frames:
            r = _render(pipe, frames, str(Path(tmp) / f"f{frames}"), cfg)
            rows.append({"frames": frames, "res": res, "latency_s": summarize(r.pop("times")), "memory_mb": r})
    return {"rows": rows}


def step_serve(cfg: CheckConfig) -> dict[str, Any]:
    """The tiny default model behind `nerv-rt serve` on this device, concurrency 16, batching on and off."""
    import importlib.util
    import tempfile

    from .serve_load import run_load

    try:
        has_serve = importlib.util.find_spec("ray.serve") is not None
    except ModuleNotFoundError:  # no ray at all
        has_serve = False
    if not has_serve:  # the GPU machines' image lacks it, and its wheel is too big to carry
        return {"not_run": f"ray is not installed ({install_command('serve')})"}
    gpu = ["--device", "cuda", "--num-gpus", "1"] if cfg.device == "cuda" else ["--device", "cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        doc = run_load(Path(tmp), "default", gpu, cfg.device, "auto", concurrencies=(cfg.serve_concurrency,),
                       body={"frames": cfg.frames, "steps": cfg.protocols[-1][2]}, batching=cfg.serve_batching)
    return {"rows": doc["rows"], "speedup": doc["speedup"]}


def step_aoti(cfg: CheckConfig) -> dict[str, Any]:
    """Preset S compiled ahead of time for this device: the decoder and one sampler step against torch."""
    import tempfile

    from ..export.onnx_export import export
    from ..runtime.pipeline import Pipeline
    from .suites import random_checkpoint

    preset_name, res = cfg.graph_presets[0], cfg.resolutions[0]
    _, sampler, steps = cfg.protocols[-1]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_checkpoint(preset_name, res, Path(tmp))
        t0 = time.perf_counter()
        folder = export(ckpt, Path(tmp) / "export", aoti_device=cfg.device, graphs_wanted=cfg.aoti_graphs)
        compile_s = time.perf_counter() - t0
        print(f"  aoti: export + compile {compile_s:.0f} s", flush=True)
        for backend, source in (("torch", ckpt), ("aoti", folder)):
            pipe = Pipeline.load(source, backend=backend, device=cfg.device)
            row: dict[str, Any] = {"per_step_ms": _per_step_ms(pipe, steps, sampler, cfg), "graphs_captured": pipe.model().graphs_captured}
            if "decoder" in cfg.aoti_graphs:
                tokens = pipe.sample_tokens(steps=1)
                decode = cases.measured(cases.already_made(functools.partial(pipe.decode, tokens, cfg.frames)), cfg.device,
                                        cfg.warmup, cfg.repeats)
                row["decoder_s"] = summarize(decode.pop("times"))
            rows[backend] = row
    return {"preset": preset_name, "res": res, "export_and_compile_s": compile_s, "rows": rows}


STEP_FUNCTIONS = {"env": step_env, "pytest": step_pytest, "decoder": step_decoder, "generator": step_generator,
                  "graph": step_graph, "memory": step_memory, "serve": step_serve, "aoti": step_aoti}


# ---------------------------------------------------------------------------------------------
# Running, targets, report
# ---------------------------------------------------------------------------------------------

def step_status(result: dict[str, Any]) -> str:
    if "not_run" in result:  # the step found what it needs missing (its reason is in the result)
        return "skipped"
    return "failed" if result.get("exit_code") not in (None, 0) else "ok"  # pytest's 5 too: no gpu test collected


def run_check(cfg: CheckConfig, out: Path, skip: tuple[str, ...] = (), say=print,
              earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the steps not in `skip`; `earlier`: an earlier results.json, whose entries of the skipped steps are kept
    (its creation time and config recorded under `kept_from`)."""
    earlier = earlier or {}
    kept = {k: _restatus(v) for k, v in earlier.get("steps", {}).items() if k in skip}
    doc: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": asdict(cfg),
                           "steps": {k: kept.get(k, {"status": "skipped"}) if k in skip else {"status": "pending"} for k in STEPS},
                           "paper_a6000": PAPER_A6000}  # "pending" stays on a step whose window ended while it ran
    if kept:
        doc["kept_from"] = {"created": earlier.get("created"), "config": earlier.get("config"), "steps": sorted(kept)}
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    _finish(doc, out, t_all)  # the kept entries on disk from the start: a window that ends mid-step keeps them
    for name in STEPS:
        if name in skip:
            continue
        say(f"[{time.perf_counter() - t_all:5.0f} s] {name} (time box {cfg.time_box_s[name]:g} s)")
        t0 = time.perf_counter()
        try:
            result, _ = run_in_child(STEP_FUNCTIONS[name], imports=("torch",), timeout=cfg.time_box_s[name], cfg=cfg)
            entry = {"status": step_status(result), "result": result, "ran": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        except TimeoutError as e:
            entry = {"status": "timeout", "error": str(e)}
        except (RuntimeError, NervError) as e:
            entry = {"status": "error", "error": str(e)[-2000:]}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        doc["steps"][name] = entry
        _finish(doc, out, t_all)
    return doc


def _restatus(entry: dict[str, Any]) -> dict[str, Any]:
    """A kept entry's status by this version's rules (an older one recorded a failed pytest as ok)."""
    return {**entry, "status": step_status(entry["result"])} if "result" in entry else entry


def _finish(doc: dict[str, Any], out: Path, t_all: float) -> None:
    doc["targets"] = targets(doc)
    doc["total_seconds"] = round(time.perf_counter() - t_all, 1)
    write(doc, out)


def _ok(doc: dict, step: str) -> dict[str, Any] | None:
    entry = doc["steps"].get(step, {})
    return entry.get("result") if entry.get("status") == "ok" else None


def measured_figures(doc: dict[str, Any]) -> dict[str, float]:
    """The targets' figures, from whatever steps finished."""
    figures: dict[str, float] = {}
    decoder = _ok(doc, "decoder")
    if decoder:
        best: dict[tuple[bool, int], dict] = {}  # latency: per (is NeRV, res) the faster of eager / CUDA graph
        eager: dict[tuple[bool, int], dict] = {}  # memory: eager rows (a graph keeps its pool between calls)
        for r in decoder["rows"]:
            k = (not r["model"].startswith("SD-VAE"), r["res"])
            if k not in best or r["latency_s"]["median"] < best[k]["latency_s"]["median"]:
                best[k] = r
            if r["backend"] == "eager":
                eager[k] = r
        for res in (128, 256):
            if (True, res) in best and (False, res) in best:
                nerv, sd = best[(True, res)], best[(False, res)]
                figures[f"decoder latency NeRV-L / SD-VAE at {res}^2"] = nerv["latency_s"]["median"] / sd["latency_s"]["median"]
        if (True, 256) in eager and (False, 256) in eager:
            nerv_mb, sd_mb = (eager[(k, 256)]["memory_mb"].get(DECODER_MEMORY) for k in (True, False))
            if nerv_mb and sd_mb:
                figures["decoder memory NeRV-L / SD-VAE at 256^2"] = nerv_mb / sd_mb
    gen = _ok(doc, "generator")
    if gen:
        paper = [r for r in gen["rows"] if r["res"] == 128 and r["protocol"] == "paper"]
        if paper:
            figures["full generation, L, 16 frames at 128^2, DDPM 250 + CFG (s)"] = min(r["latency_s"]["median"] for r in paper)
        captured = [r for r in gen["rows"] if r["res"] == 128 and r["backend"] == "torch-cudagraph" and r["protocol"] == "fast"]
        if captured and 128 in {int(k) for k in gen["bare_dit_forward_ms"]}:
            bare = gen["bare_dit_forward_ms"].get(128, gen["bare_dit_forward_ms"].get("128"))
            figures["captured step / bare DiT forward, L at 128^2"] = captured[0]["per_step_ms"] / bare
    graph = _ok(doc, "graph")
    if graph:
        for r in graph["rows"]:
            if r["preset"] == "S" and r["speedup"]:
                figures["whole-loop graph speed-up per step, S"] = r["speedup"]
    return figures


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if doc["config"]["dry_run"]:
        return out  # tiny models on a CPU: nothing to hold against the paper's targets
    for name, value in measured_figures(doc).items():
        op, bound = TARGETS[name]
        out.append({"target": f"{name} {op} {bound}", "value": value, "met": value <= bound if op == "<=" else value >= bound,
                    "paper_a6000": PAPER_FOR_TARGET.get(name, "")})
    return out


def gpu_slug(doc: dict[str, Any]) -> str:
    env = _ok(doc, "env") or {}
    name = env.get("gpu") or f"cpu-{env.get('cpu', 'unknown')}"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write(doc: dict[str, Any], out: Path) -> None:
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2, default=str) + "\n")
    atomic_write_text(out / "results.md", render_markdown(doc))


def _gb(r: dict, key: str) -> str:
    v = r["memory_mb"].get(key)
    return "" if v is None else f"{v / 1024:.2f}"


def render_markdown(doc: dict[str, Any]) -> str:
    c, env = doc["config"], _ok(doc, "env") or {}
    where = env.get("gpu") or env.get("cpu", "unknown machine")
    lines = [f"# nerv-rt GPU check: {where}" + (" (DRY RUN on CPU, tiny models)" if c["dry_run"] else ""), "",
             *([f"**error: {doc['error']}** (only the environment was recorded)", ""] if doc.get("error") else []),
             f"{doc['created']} | {c['device']} | {c['precision']} | torch {env.get('torch', '?')} | CUDA {env.get('cuda', '-')} | "
             f"driver {env.get('driver', '-')} | TensorRT {env.get('tensorrt', 'not installed')} | {c['repeats']} timed runs "
             f"after {c['warmup']} warm-up (median) | total {doc.get('total_seconds', 0):.0f} s", "",
             "Paper figures are the paper's (NeRV-Diffusion, ICLR 2026, A6000, bf16, batch 1), not measurements of this run.",
             "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {v['status']} | {v.get('seconds', '')} |" for k, v in doc["steps"].items()]
    pytest_result = doc["steps"].get("pytest", {}).get("result")  # also when it failed
    if pytest_result:
        lines += ["", f"pytest -m gpu: {pytest_result['summary']}"] + [f"- FAILED {f}" for f in pytest_result["failures"]]
        if pytest_result.get("tail"):
            lines += ["", "```", *pytest_result["tail"], "```"]
    decoder = _ok(doc, "decoder")
    if decoder:
        lines += ["", f"## Decoder: one {c['frames']}-frame video", "",
                  "| model | res | backend | GMACs | latency median (s) | allocator peak (GB) | NVML process peak above "
                  "its level before the model (GB) | paper A6000 latency (s) | paper VRAM (GB) |", "|---|---|---|---|---|---|---|---|---|"]
        for r in decoder["rows"]:
            latency, vram = paper_decoder(r["model"])
            p_lat, p_mem = latency.get(r["res"], ""), vram if r["res"] == 256 else ""
            lines.append(f"| {r['model']} | {r['res']} | {r['backend']} | {r['gmacs']:.0f} | {r['latency_s']['median']:.4f} | "
                         f"{_gb(r, 'allocator_peak_mb')} | {_gb(r, 'nvml_process_delta_peak_mb')} | {p_lat} | {p_mem} |")
    gen = _ok(doc, "generator")
    if gen:
        lines += ["", f"## Generator: sampling + decoding one {c['frames']}-frame video ({c['generator_repeats']} timed runs "
                  "after 1 warm-up)", "",
                  "| model | backend | res | protocol | latency (s) | sampling (s) | decoding (s) | per step (ms) | "
                  "allocator peak (GB) | NVML process peak (GB) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in gen["rows"]:
            lines.append(f"| {r['model']} | {r['backend']} | {r['res']} | {r['protocol']} ({r['sampler']} {r['steps']}, CFG 2) | "
                         f"{r['latency_s']['median']:.3f} | {r['sample_s']['median']:.3f} | {r['decode_s']['median']:.3f} | "
                         f"{r['per_step_ms']:.2f} | {_gb(r, 'allocator_peak_mb')} | {_gb(r, 'nvml_process_peak_mb')} |")
        lines.append("")
        lines.append(f"Bare DiT forward at the CFG batch ({'CUDA graph' if c['device'] == 'cuda' else 'eager'}): " + ", ".join(
            f"{ms:.2f} ms at {res}^2" for res, ms in gen["bare_dit_forward_ms"].items()) +
            f". Paper (A6000): NeRV-Diffusion-L {PAPER_A6000['generator_latency_s']['NeRV-Diffusion-L'][128]} s / "
            f"{PAPER_A6000['generator_latency_s']['NeRV-Diffusion-L'][256]} s at 128^2 / 256^2.")
    graph = _ok(doc, "graph")
    if graph:
        lines += ["", "## Whole-loop CUDA graph (DDIM 50, CFG, per sampler step)", "", "| preset | eager (ms) | graph (ms) | speed-up |",
                  "|---|---|---|---|"]
        for r in graph["rows"]:
            g, speedup = r["per_step_ms"].get("torch-cudagraph"), r["speedup"]
            graphed = "" if g is None else f"{g:.2f}"
            times = "" if speedup is None else f"{speedup:.2f}x"
            lines.append(f"| {r['preset']} | {r['per_step_ms']['torch']:.2f} | {graphed} | {times} |")
    memory = _ok(doc, "memory")
    if memory:
        lines += ["", "## Memory of long videos (render, 16 frames per decoder call)", "",
                  "| frames | res | latency (s) | allocator peak (GB) | NVML process peak (GB) |", "|---|---|---|---|---|"]
        for r in memory["rows"]:
            lines.append(f"| {r['frames']} | {r['res']} | {r['latency_s']['median']:.3f} | {_gb(r, 'allocator_peak_mb')} | "
                         f"{_gb(r, 'nvml_process_peak_mb')} |")
    serve = _ok(doc, "serve")
    if serve:
        lines += ["", "## nerv-rt serve (default model, concurrency 16)", "", "| batching | clips/s | p50 (s) | p95 (s) | "
                  "mean videos per run |", "|---|---|---|---|---|"]
        for r in serve["rows"]:
            lines.append(f"| {'on' if r['batching'] else 'off'} | {r['clips_per_s']:.2f} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
                         f"{r['mean_batch']:.1f} |")
    aoti = _ok(doc, "aoti")
    if aoti:
        lines += ["", f"## AOTInductor, preset {aoti['preset']} at {aoti['res']}^2 (export + compile "
                  f"{aoti['export_and_compile_s']:.0f} s)", "", "| backend | decoder (s) | per step (ms) |", "|---|---|---|"]
        for b, r in aoti["rows"].items():
            decoder_s = f"{r['decoder_s']['median']:.4f}" if "decoder_s" in r else ""
            lines.append(f"| {b} | {decoder_s} | {r['per_step_ms']:.2f} |")
    if doc.get("targets"):
        lines += ["", "## Targets", "", "| target | measured | paper (A6000) | met |", "|---|---|---|---|"]
        for t in doc["targets"]:
            lines.append(f"| {t['target']} | {t['value']:.3f} | {t['paper_a6000']} | {'met' if t['met'] else 'MISSED'} |")
    for name, entry in doc["steps"].items():
        if entry["status"] in ("error", "timeout"):
            lines += ["", f"{name}: {entry['status']}: {entry['error'].strip().splitlines()[-1] if entry['error'] else ''}"]
        elif entry.get("result", {}).get("not_run"):
            lines += ["", f"{name}: skipped: {entry['result']['not_run']}"]
    return "\n".join(lines) + "\n"


def _no_gpu() -> str | None:
    """Why no GPU step can run here, or None."""
    try:
        import torch
    except Exception as e:  # a broken image: say so in the results, which are all a device window gives back
        return f"torch cannot be imported ({type(e).__name__}: {e})"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch; use --dry-run on a CPU machine"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="results folder (default: bench/results/<gpu-slug>/)")
    ap.add_argument("--skip", nargs="*", default=[], choices=STEPS, help="steps to leave out")
    ap.add_argument("--rerun", nargs="+", choices=STEPS, metavar="STEP",
                    help="run only these steps again, keeping the other steps' results from --out's results.json")
    ap.add_argument("--dry-run", action="store_true", help="the same sequence on the CPU at tiny size")
    args = ap.parse_args(argv)
    cfg = CheckConfig.dry() if args.dry_run else CheckConfig()
    earlier_doc, skip = None, tuple(args.skip)
    if args.rerun:
        earlier = args.out / "results.json" if args.out else None
        if args.skip or earlier is None or not earlier.is_file():
            print("error: --rerun needs --out with the results.json of an earlier run (and no --skip)", file=sys.stderr)
            return 2
        earlier_doc = json.loads(earlier.read_text())
        was = {k: earlier_doc.get("config", {}).get(k) for k in ("dry_run", "device", "precision")}
        if was != {k: asdict(cfg)[k] for k in was}:
            print(f"error: {earlier} is of another kind of run ({was}): --rerun keeps results of the same kind only",
                  file=sys.stderr)
            return 2
        skip = tuple(k for k in STEPS if k not in args.rerun)
    no_gpu = None if args.dry_run else _no_gpu()
    if no_gpu:
        # The environment and the reason are recorded (from a device window, results.json is all that comes back),
        # but only into a new --out: never over a run's results, nor into the checkout's bench/results.
        if args.out is None or args.rerun or (args.out / "results.json").exists():
            print(f"error: {no_gpu}", file=sys.stderr)
            return 2
        skip = tuple(k for k in STEPS if k != "env")
    if args.out is not None:
        out = args.out
    elif args.dry_run:  # not into the source tree: a dry run's figures are no results
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="nerv-rt-gpu-check-dry-"))
    else:
        out = ROOT / "bench" / "results" / "gpu-check-pending"
    doc = run_check(cfg, out, skip, say=lambda s: print(s, flush=True), earlier=earlier_doc)
    if no_gpu:
        doc["error"] = no_gpu
        write(doc, out)
    if args.out is None and not args.dry_run:  # name the folder after the GPU it ran on
        final = ROOT / "bench" / "results" / gpu_slug(doc)
        if final.exists():
            import shutil

            shutil.rmtree(final)
        os.replace(out, final)
        out = final
    print((out / "results.md").read_text())
    print(f"results: {out}")
    if no_gpu:
        print(f"error: {no_gpu}", file=sys.stderr)
        return 2
    failed = [k for k, v in doc["steps"].items() if v["status"] in ("error", "timeout", "failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
