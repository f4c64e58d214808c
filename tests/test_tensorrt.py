"""What can be checked about the TensorRT path without TensorRT: op coverage, profiles, cache keys,
the clear error when it is missing. Tests that need TensorRT and a GPU skip with a reason."""
import importlib.util
import json

import onnx
import pytest
from onnx import helper

from nerv_rt.errors import NervError
from nerv_rt.export.specs import dim_ranges, graph_specs, profile_shapes
from nerv_rt.export.trt_build import (
    check_runtime_match,
    engine_key,
    key_digest,
    stale_fields,
)
from nerv_rt.export.trt_ops import SUPPORTED, unsupported_ops
from nerv_rt.models.presets import preset

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _model(op_type: str, opset: int = 18, **attrs) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_exported_graphs_use_only_tensorrt_ops(tiny_export):
    for name in ("dit", "decoder", "encoder"):
        model = onnx.load(str(tiny_export / f"{name}.onnx"))
        assert unsupported_ops(model) == [], name
        assert {n.op_type for n in model.graph.node} <= SUPPORTED


def test_op_scan_flags_unsupported_ops_and_restrictions():
    assert unsupported_ops(_model("Relu")) == []
    assert unsupported_ops(_model("Col2Im")) == ["Col2Im"]
    assert unsupported_ops(_model("DFT")) == ["DFT"]
    assert unsupported_ops(_model("Resize", antialias=1)) == ["Resize(antialias=1)"]
    assert unsupported_ops(_model("Resize", mode="cubic")) == ["Resize(mode=cubic)"]
    assert unsupported_ops(_model("Relu", opset=23)) == ["opset 23 (TensorRT 10 parses 9-20)"]


def test_profiles_cover_cfg_batch_and_frame_chunks():
    specs = graph_specs(preset("S", 256))
    assert dim_ranges("dit", max_batch=4, max_frames=64) == {"B": (1, 2, 8)}
    dit = profile_shapes(specs["dit"], max_batch=4, max_frames=64)
    assert dit["x_t"] == ((1, 160, 16), (2, 160, 16), (8, 160, 16))
    assert dit["t"] == ((1,), (2,), (8,)) and dit["y"] == ((1,), (2,), (8,))
    dec = profile_shapes(specs["decoder"], max_batch=4, max_frames=8)
    assert dec == {"tokens": ((1, 160, 16),) * 3, "frame_t": ((1,), (8,), (8,))}  # opt clipped to max
    enc = profile_shapes(specs["encoder"], max_batch=4, max_frames=64)
    assert enc == {"video": ((1, 16, 3, 256, 256),) * 3}


def test_output_shapes_follow_symbolic_dims():
    specs = graph_specs(preset("tiny", 128))
    assert specs["decoder"].output_shapes({"tokens": (1, 32, 16), "frame_t": (7,)}) == {"frames": (7, 3, 128, 128)}
    assert specs["dit"].output_shapes({"x_t": (6, 32, 16), "t": (6,), "y": (6,)}) == {"eps": (6, 32, 16)}


BASE = dict(onnx_sha256="a" * 64, precision="fp16", profiles={"x_t": ((1, 2, 3), (2, 2, 3), (8, 2, 3))},
            trt_version="10.3.0", gpu_name="NVIDIA H100", compute_capability="9.0")


@pytest.mark.parametrize("field,value", [("onnx_sha256", "b" * 64), ("precision", "bf16"),
                                         ("profiles", {"x_t": ((1, 2, 3), (2, 2, 3), (16, 2, 3))}),
                                         ("trt_version", "10.4.0"), ("gpu_name", "NVIDIA A6000"),
                                         ("compute_capability", "8.6")])
def test_cache_key_changes_trigger_rebuild(field, value):
    old = engine_key(**BASE)
    new = engine_key(**{**BASE, field: value})
    assert stale_fields(old, old) == []
    key_field = {"trt_version": "tensorrt", "gpu_name": "gpu"}.get(field, field)
    assert stale_fields(old, new) == [key_field]
    assert key_digest(old) != key_digest(new)
    assert json.loads(json.dumps(old)) == old  # stored in the manifest as JSON


def test_engine_from_another_gpu_or_tensorrt_says_rebuild(tmp_path):
    entry = {"key": engine_key(**BASE)}
    check_runtime_match(entry, "10.3.0", "NVIDIA H100", "9.0", tmp_path / "dit.fp16.plan")
    with pytest.raises(NervError, match=r"tensorrt 10.3.0 \(running 10.5.0\).*nerv-rt build"):
        check_runtime_match(entry, "10.5.0", "NVIDIA H100", "9.0", tmp_path / "dit.fp16.plan")
    with pytest.raises(NervError, match=r"gpu NVIDIA H100 \(running NVIDIA L4\)"):
        check_runtime_match(entry, "10.3.0", "NVIDIA L4", "8.9", tmp_path / "dit.fp16.plan")


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed: the missing-package error cannot occur")
def test_missing_tensorrt_is_a_clear_error(tiny_export):
    from nerv_rt.export.trt_build import build_engines, import_tensorrt
    from nerv_rt.runtime.pipeline import Pipeline
    from nerv_rt.runtime.sources import read_manifest

    with pytest.raises(NervError, match="TensorRT is not installed"):
        import_tensorrt()
    with pytest.raises(NervError, match="TensorRT is not installed"):
        build_engines(tiny_export, read_manifest(tiny_export))
    with pytest.raises(NervError, match="TensorRT is not installed"):
        Pipeline.load(tiny_export, backend="tensorrt")
    assert Pipeline.load(tiny_export).backend_name == "onnxruntime"  # auto falls back


@pytest.mark.skipif(not HAVE_TRT, reason="needs tensorrt and a CUDA GPU")
def test_build_and_run_tensorrt_engines(tiny_export, tmp_path):  # pragma: no cover - GPU machines only
    import shutil

    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from nerv_rt.export.trt_build import build_engines
    from nerv_rt.runtime.pipeline import Pipeline
    from nerv_rt.runtime.sources import read_manifest

    folder = tmp_path / "trt"
    shutil.copytree(tiny_export, folder)
    m = build_engines(folder, read_manifest(folder), "fp32")
    again = build_engines(folder, m, "fp32")
    assert again["engines"] == m["engines"]  # same key: reused, not rebuilt
    a = Pipeline.load(folder, backend="tensorrt").generate(frames=4, steps=3)
    b = Pipeline.load(folder, backend="onnxruntime", device="cpu").generate(frames=4, steps=3)
    assert abs(a.astype(int) - b).max() <= 3
