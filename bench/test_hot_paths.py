"""pytest-benchmark suite for the hot paths, per preset (tiny, S) and CPU backend (torch, onnxruntime).

    pytest bench/ --benchmark-only --benchmark-save=<name>       # run and save
    pytest-benchmark compare --group-by=name                      # compare saved runs

Benchmarks, not tests: timings depend on the machine; speed targets are read off the saved
results as ratios within one run (see README, "Benchmarks").
"""
from __future__ import annotations

import numpy as np
import pytest

from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sampling import DeviceInputs, denoise, prepare_inputs

BACKENDS = ["torch", "onnxruntime"]


def _pipe(model_paths, backend: str) -> Pipeline:
    _, ckpt, export = model_paths
    return Pipeline.load(ckpt if backend == "torch" else export, backend=backend, device="cpu")


def _group(benchmark, model_paths, what: str) -> None:
    benchmark.group = f"{what} [{model_paths[0]}]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_decoder_16_frames(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "decoder 16f@128")
    pipe = _pipe(model_paths, backend)
    m = pipe.model()
    tokens = m.backend.asarray(np.random.default_rng(0).standard_normal((1, m.config.tokens, m.config.token_dim), dtype=np.float32))
    times = m.backend.asarray(np.linspace(0, 1, 16, dtype=np.float32))
    decoder = m.engine("decoder")
    benchmark(lambda: decoder(tokens=tokens, frame_t=times))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dit_forward_cfg_batch(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "DiT forward B=2")
    pipe = _pipe(model_paths, backend)
    m = pipe.model()
    rng = np.random.default_rng(0)
    feed = {"x_t": rng.standard_normal((2, m.config.tokens, m.config.token_dim), dtype=np.float32),
            "t": np.array([500.0, 500.0], np.float32), "y": np.array([0, m.config.num_classes], np.int64)}
    feed = {k: m.backend.asarray(v) for k, v in feed.items()}
    dit = m.engine("dit")
    benchmark(lambda: dit(**feed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_sampler_step(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "sampler step (CFG)")
    pipe = _pipe(model_paths, backend)
    m = pipe.model()
    host = prepare_inputs(0, 1, m.config.tokens, m.config.token_dim, m.config.num_classes, None, 1, "ddim", 0.0, 2.0)
    inputs = DeviceInputs.from_host(m.backend, host)
    dit = m.engine("dit")
    benchmark(lambda: denoise(dit, inputs, host.guidance))


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_generate(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "generate 16f@128, DDIM 50")
    pipe = _pipe(model_paths, backend)
    benchmark.pedantic(lambda: pipe.generate(frames=16, steps=50, seed=0), rounds=3, warmup_rounds=1)
