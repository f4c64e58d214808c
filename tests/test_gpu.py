"""The GPU path on hardware (marked `gpu`; skipped without CUDA; scripts/gpu_check.sh runs them): the captured
sampling loop against the step loop, capture keys that do not disturb each other, fp16 / bf16 engines and
torch against fp32, ONNX Runtime's CUDA EP with and without its CUDA graphs, AOTInductor on CUDA."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

from nerv_rt.engines.ort_backend import cuda_ep_available  # noqa: E402
from nerv_rt.export.trt_build import tensorrt_available  # noqa: E402
from nerv_rt.runtime.pipeline import Pipeline  # noqa: E402

KW = dict(n=2, steps=6, seed=3, class_label=1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 videos."""
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_captured_loop_equals_the_step_loop(tiny_ckpt):

    captured = Pipeline.load(tiny_ckpt, backend="torch-cudagraph")
    steps = Pipeline.load(tiny_ckpt, backend="torch-cudagraph", cuda_graph=False)
    assert captured.model().backend.can_capture and not steps.model().backend.can_capture
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the capture must succeed, not fall back
        a = captured.sample_tokens(**KW)
    assert captured.model().graphs_captured == 1
    b = steps.sample_tokens(**KW)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_a_second_capture_key_leaves_the_first_unchanged(tiny_ckpt):
    pipe = Pipeline.load(tiny_ckpt, backend="torch-cudagraph")
    first = pipe.sample_tokens(**KW).clone()
    pipe.sample_tokens(**{**KW, "n": 3})  # another batch: another graph
    pipe.sample_tokens(**{**KW, "guidance": 1.0})  # no CFG: another DiT batch
    torch.testing.assert_close(pipe.sample_tokens(**KW), first)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_in_low_precision_matches_fp32(tiny_ckpt, precision):
    ref = Pipeline.load(tiny_ckpt, backend="torch", device="cuda")
    low = Pipeline.load(tiny_ckpt, backend="torch", device="cuda", precision=precision)
    assert next(low.model().backend.modules["decoder"].parameters()).dtype == getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}[precision])
    assert "encoder" not in {g for g, m in low.model().backend.modules.items() if next(m.parameters()).is_cuda}
    tokens = ref.sample_tokens(**KW)
    assert _psnr(low.decode(tokens, frames=8), ref.decode(tokens, frames=8)) >= 35


@pytest.fixture(scope="module")
def typed_export(tiny_ckpt, tmp_path_factory):
    from nerv_rt.export.onnx_export import export

    return export(tiny_ckpt, tmp_path_factory.mktemp("trt") / "e", precisions=("fp32", "fp16", "bf16"))


@pytest.mark.skipif(not tensorrt_available(), reason="needs TensorRT")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])  # one folder: the second build reuses the timing cache
def test_tensorrt_engines(tiny_ckpt, typed_export, precision):
    from nerv_rt.export.trt_build import build_engines
    from nerv_rt.runtime.sources import read_manifest

    folder = typed_export
    manifest = build_engines(folder, read_manifest(folder), precision)
    assert build_engines(folder, manifest, precision)["engines"] == manifest["engines"]  # same key: reused
    ref = Pipeline.load(tiny_ckpt, backend="torch", device="cuda")
    trt = Pipeline.load(folder, backend="tensorrt", precision=precision)
    steps = Pipeline.load(folder, backend="tensorrt", precision=precision, cuda_graph=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns and falls back: not here
        a = trt.sample_tokens(**KW)
    assert trt.model().graphs_captured == 1
    torch.testing.assert_close(a, steps.sample_tokens(**KW), atol=1e-3, rtol=1e-3)  # captured == step loop
    trt.sample_tokens(**{**KW, "n": 3})
    torch.testing.assert_close(trt.sample_tokens(**KW), a)  # a second key, then the first again
    tokens = ref.sample_tokens(**KW)
    assert _psnr(trt.decode(tokens, frames=20, chunk=20), ref.decode(tokens, frames=20)) >= 35  # chunk > profile: split


@pytest.mark.skipif(not cuda_ep_available(), reason="this onnxruntime has no CUDA execution provider (onnxruntime-gpu)")
@pytest.mark.parametrize("cuda_graph", [False, True])  # skipped before the export fixture is built
def test_onnxruntime_cuda_ep(tiny_ckpt, tiny_export, cuda_graph):
    pipe = Pipeline.load(tiny_export, backend="onnxruntime", device="cuda", cuda_graph=cuda_graph)
    ref = Pipeline.load(tiny_ckpt, backend="torch", device="cuda")
    np.testing.assert_allclose(pipe.sample_tokens(**KW), ref.sample_tokens(**KW).cpu().numpy(), atol=1e-3, rtol=1e-3)


def test_aoti_on_cuda_captures_the_loop(tiny_ckpt, tmp_path):

    from nerv_rt.export.onnx_export import export

    # the DiT alone: each graph is about a minute of Inductor compile on an H200 (16 cores), and pytest has 110 s
    folder = export(tiny_ckpt, tmp_path / "a", aoti_device="cuda", graphs_wanted=("dit",))
    pipe = Pipeline.load(folder, backend="aoti", device="cuda")
    ref = Pipeline.load(tiny_ckpt, backend="torch", device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns and falls back: not here
        tokens = pipe.sample_tokens(**KW)
    assert pipe.model().graphs_captured == 1
    torch.testing.assert_close(tokens, ref.sample_tokens(**KW), atol=1e-3, rtol=1e-3)
