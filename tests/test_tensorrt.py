"""What can be checked about the TensorRT path without TensorRT: op coverage, profiles, cache keys, the
clear error when it is missing, and the code itself type-checked against NVIDIA's stubs with no API that
TensorRT 11 removed. Tests that need TensorRT and a GPU are marked `gpu` and skip with a reason."""
import ast
import importlib.util
import json
import re
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import helper

from nerv_rt.errors import NervError
from nerv_rt.export.manifest import key_digest, stale_fields
from nerv_rt.export.specs import dim_ranges, graph_specs, profile_shapes
from nerv_rt.export.trt_build import check_runtime_match, engine_key, tensorrt_available, timing_cache_name
from nerv_rt.export.trt_ops import SUPPORTED, unsupported_ops
from nerv_rt.models.presets import preset

HAVE_TRT = tensorrt_available()  # the real library: tensorrt-stubs alone makes an empty `tensorrt` package
ROOT = Path(__file__).resolve().parents[1]


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
    assert unsupported_ops(_model("Relu", opset=25)) == ["opset 25 (TensorRT parses 9-24)"]


def test_profiles_cover_cfg_batch_and_frame_chunks():
    specs = graph_specs(preset("S", 256))
    assert dim_ranges("dit", max_batch=4, max_frames=64) == {"B": (1, 2, 8)}
    assert dim_ranges("decoder", max_batch=4, max_frames=16) == {"F": (1, 16, 16)}  # the export default = generate's chunk
    dit = profile_shapes(specs["dit"], max_batch=4, max_frames=64)
    assert dit["x_t"] == ((1, 160, 16), (2, 160, 16), (8, 160, 16))
    assert dit["t"] == ((1,), (2,), (8,)) and dit["y"] == ((1,), (2,), (8,))
    dec = profile_shapes(specs["decoder"], max_batch=4, max_frames=8)
    assert dec == {"frame_t": ((1,), (8,), (8,))}  # opt clipped to max; the tokens are static: no range
    assert profile_shapes(specs["encoder"], max_batch=4, max_frames=64) == {}  # a static graph: no profile


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


def test_build_picks_the_exports_typed_graphs():
    from nerv_rt.export.trt_build import typed_precision

    def manifest(*typed):
        return {"graphs": {g: {"precisions": {p: {} for p in typed}} for g in ("dit", "decoder", "encoder")}}

    assert typed_precision(manifest()) == "fp32"  # `nerv-rt export` without --precision
    assert typed_precision(manifest("bf16")) == "bf16"
    assert typed_precision(manifest("bf16", "fp16")) == "fp16"
    partial = manifest("fp16")
    del partial["graphs"]["encoder"]["precisions"]["fp16"]
    assert typed_precision(partial) == "fp32"


def test_plans_of_an_older_build_policy_are_rebuilt():
    from nerv_rt.export import trt_build

    recorded = {k: v for k, v in engine_key(**BASE).items() if k != "build_policy"}  # a plan from before the field
    assert stale_fields(recorded, engine_key(**BASE)) == ["build_policy"]
    assert stale_fields({**recorded, "build_policy": trt_build.BUILD_POLICY - 1}, engine_key(**BASE)) == ["build_policy"]


def test_engine_from_another_gpu_or_tensorrt_says_rebuild(tmp_path):
    entry = {"key": engine_key(**BASE)}
    check_runtime_match(entry, "10.3.0", "NVIDIA H100", "9.0", tmp_path / "dit.fp16.plan")
    with pytest.raises(NervError, match=r"tensorrt 10.3.0 \(running 10.5.0\).*nerv-rt build"):
        check_runtime_match(entry, "10.5.0", "NVIDIA H100", "9.0", tmp_path / "dit.fp16.plan")
    with pytest.raises(NervError, match=r"gpu NVIDIA H100 \(running NVIDIA L4\)"):
        check_runtime_match(entry, "10.3.0", "NVIDIA L4", "8.9", tmp_path / "dit.fp16.plan")
    entry["key"]["build_policy"] -= 1  # a plan built with older builder settings
    with pytest.raises(NervError, match=r"build_policy 1 \(running 2\).*nerv-rt build"):
        check_runtime_match(entry, "10.3.0", "NVIDIA H100", "9.0", tmp_path / "dit.fp16.plan")


@pytest.mark.skipif(HAVE_TRT, reason="tensorrt is installed: the missing-package error cannot occur")
def test_missing_tensorrt_is_a_clear_error(tiny_export):
    from nerv_rt.export.trt_build import build_engines, import_tensorrt
    from nerv_rt.runtime.pipeline import Pipeline
    from nerv_rt.runtime.sources import read_manifest

    with pytest.raises(NervError, match="TensorRT is not installed"):
        import_tensorrt()
    with pytest.raises(NervError, match="TensorRT is not installed: .*tensorrt 10.12 to 11.x\\)$"):  # build has no --backend
        build_engines(tiny_export, read_manifest(tiny_export))
    with pytest.raises(NervError, match="TensorRT is not installed: .*, or use backend='onnxruntime'$"):  # the Python API's name
        Pipeline.load(tiny_export, backend="tensorrt")
    assert Pipeline.load(tiny_export).backend_name == "onnxruntime"  # auto falls back


def test_auto_names_engines_built_at_another_precision(tiny_export, monkeypatch):
    """`build` picks fp16 where the export has fp16 graphs, and generation runs fp32 unless told: auto on a GPU
    then runs ONNX Runtime, and says which --precision would run the engines."""
    from nerv_rt.engines import select, trt_backend
    from nerv_rt.runtime.sources import resolve

    monkeypatch.setattr(select, "torch_cuda", lambda: True)
    monkeypatch.setattr(trt_backend, "engines_ready", lambda source, precision: precision == "fp16")
    source = resolve(tiny_export)[0]
    with pytest.warns(UserWarning, match="has TensorRT engines at fp16, not fp32: pass precision='fp16' to run them"):
        assert select.resolve_backend("auto", source) == "onnxruntime"
    assert select.resolve_backend("auto", source, precision="fp16") == "tensorrt"


def test_timing_cache_is_named_per_gpu_and_tensorrt():
    a = timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "10.13.0")
    assert a == "timing-nvidia-h100-80gb-hbm3-sm90-trt10.13.0.cache"
    assert len({a, timing_cache_name("NVIDIA H200", "9.0", "10.13.0"), timing_cache_name("NVIDIA H100 80GB HBM3", "9.0", "11.4.0")}) == 3


# ---------------------------------------------------------------------------------------------
# The code against the TensorRT API: NVIDIA's stubs (10.13) and what 11.x removed
# ---------------------------------------------------------------------------------------------

TRT_SOURCES = sorted(p for p in (ROOT / "nerv_rt").rglob("*.py") if re.search(r"^\s*import tensorrt", p.read_text(), re.M))
REMOVED_BUILDER_FLAGS = {"FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                         "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}  # weak typing, gone in TensorRT 11
REMOVED_MEMBERS = {"int8_calibrator", "device_memory_size", "platform_has_fast_fp16", "platform_has_fast_int8",
                   "set_calibration_profile", "get_calibration_profile", "set_quantization_flag",
                   "clear_quantization_flag", "get_quantization_flag", "quantization_flags", "EXPLICIT_BATCH"}


def test_tensorrt_code_uses_no_api_removed_in_tensorrt_11():
    assert {p.name for p in TRT_SOURCES} >= {"trt_build.py", "trt_backend.py"}
    used = []
    for path in TRT_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                flag = isinstance(node.value, ast.Attribute) and node.value.attr == "BuilderFlag"
                if (flag and node.attr in REMOVED_BUILDER_FLAGS) or node.attr in REMOVED_MEMBERS:
                    used.append(f"{path.name}:{node.lineno} {node.attr}")
    assert used == []


def _stubs(tmp_path: Path) -> Path:
    """NVIDIA's stubs (tensorrt-stubs) copied where mypy reads them, with the few parameters they name `in` (a
    Python keyword) renamed and one misplaced default fixed, so that they parse; nothing else is touched."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or importlib.util.find_spec("mypy") is None:
        pytest.skip("needs mypy and tensorrt-stubs (README: the test command installs them)")
    site = Path(spec.origin).parents[1]
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, tmp_path / package)
    for pyi in tmp_path.rglob("*.pyi"):
        text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", pyi.read_text())
        pyi.write_text(text.replace("power: Weights = None, channel_axis: int)", "power: Weights = None, channel_axis: int = ...)"))
    return tmp_path


def _mypy(stubs: Path, monkeypatch, *files: Path) -> tuple[int, str]:
    """mypy on `files` with the stubs; what mypy finds wrong inside the stubs themselves is not ours to report."""
    from mypy import api

    config = stubs / "mypy.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"
                      "[mypy-tensorrt.*,tensorrt_bindings.*]\nignore_errors = True\n")
    monkeypatch.setenv("MYPYPATH", str(stubs))
    out, err, code = api.run(["--config-file", str(config), "--no-incremental", "--cache-dir", str(stubs / ".cache"),
                              *map(str, files)])
    return code, out + err


def test_tensorrt_code_type_checks_against_the_official_stubs(tmp_path, monkeypatch):
    stubs = _stubs(tmp_path / "stubs")
    wrong = tmp_path / "wrong.py"  # the stubs must be the ones checked: an API that does not exist has to fail
    wrong.write_text("import tensorrt as trt\n\nconfig = trt.Builder(trt.Logger()).create_builder_config()\n"
                     "config.set_flag(trt.BuilderFlag.TF33)\nconfig.no_such_method()\n")
    code, out = _mypy(stubs, monkeypatch, wrong)
    assert code == 1 and "TF33" in out and "no_such_method" in out, out
    code, out = _mypy(stubs, monkeypatch, *TRT_SOURCES)
    assert code == 0, out


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TRT, reason="needs tensorrt and a CUDA GPU")
@pytest.mark.parametrize("source", ["tiny_export", "default"])
def test_build_and_run_tensorrt_engines(source, request, tmp_path):  # pragma: no cover - GPU machines only
    """From an export (weights in the graphs) and from the embedded default (graphs that read model.safetensors)."""
    import shutil

    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from nerv_rt.export.trt_build import build_engines
    from nerv_rt.runtime.pipeline import Pipeline
    from nerv_rt.runtime.sources import ASSETS_DIR, read_manifest

    folder = tmp_path / "trt"
    shutil.copytree(request.getfixturevalue("tiny_export") if source == "tiny_export" else ASSETS_DIR / "tiny-128", folder)
    m = build_engines(folder, read_manifest(folder), "fp32")
    again = build_engines(folder, m, "fp32")
    assert again["engines"] == m["engines"]  # same key: reused, not rebuilt
    a = Pipeline.load(folder, backend="tensorrt").generate(frames=4, steps=3)
    b = Pipeline.load(folder, backend="onnxruntime", device="cpu").generate(frames=4, steps=3)
    assert abs(a.astype(int) - b).max() <= 3


def test_build_leaves_the_installed_default_alone(tmp_path):
    from tests.test_cli import assert_clean_error, run

    assert_clean_error(run("build", "default", cwd=tmp_path), "export it first (`nerv-rt export default`)")
