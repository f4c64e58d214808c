"""pytest-benchmark suite for the hot paths, per preset (tiny, S) and CPU backend (torch, onnxruntime).

    pytest bench/ --benchmark-only --benchmark-save=<name>       # run and save
    pytest-benchmark compare --group-by=name                      # compare saved runs

Benchmarks, not tests: timings depend on the machine; speed targets are read off the saved
results as ratios within one run (see README, "Benchmarks").
"""
from __future__ import annotations

import pytest

from nerv_rt.bench.cases import hot_path_feeds
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sampling import DeviceInputs, VideoDraw, denoise, prepare_inputs

BACKENDS = ["torch", "onnxruntime"]


def _pipe(model_paths, backend: str) -> Pipeline:
    _, ckpt, export = model_paths
    return Pipeline.load(ckpt if backend == "torch" else export, backend=backend, device="cpu")


def _group(benchmark, model_paths, what: str) -> None:
    benchmark.group = f"{what} [{model_paths[0]}]"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("graph, label", [("decoder", "decoder 16f@128"), ("dit", "DiT forward B=2")])
def test_graph(benchmark, model_paths, backend, graph, label):
    _group(benchmark, model_paths, label)
    m = _pipe(model_paths, backend).model()
    feed, engine = hot_path_feeds(m.config, m.backend.asarray)[graph], m.engine(graph)
    benchmark(lambda: engine(**feed))


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_sampler_step(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "sampler step (CFG)")
    pipe = _pipe(model_paths, backend)
    m = pipe.model()
    host = prepare_inputs([VideoDraw(0)], m.config.tokens, m.config.token_dim, m.config.num_classes, 1, "ddim", 0.0, 2.0)
    inputs = DeviceInputs.from_host(m.backend, host)
    dit = m.engine("dit")
    benchmark(lambda: denoise(dit, inputs, host.guidance))


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_generate(benchmark, model_paths, backend):
    _group(benchmark, model_paths, "generate 16f@128, DDIM 50")
    pipe = _pipe(model_paths, backend)
    benchmark.pedantic(lambda: pipe.generate(frames=16, steps=50, seed=0), rounds=3, warmup_rounds=1)
