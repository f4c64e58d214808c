"""Graphs that read their weights from the safetensors file beside them (export/shared_weights.py; the embedded
default's layout): the same outputs bit for bit, the weights stored once, and a changed weights file caught."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from nerv_rt.errors import CheckpointError
from nerv_rt.export.manifest import graph_sha256, verify_graph
from nerv_rt.export.shared_weights import read_weights_from
from nerv_rt.formats import WEIGHTS_FILE, sha256_file
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.sources import read_manifest


def linear_graph(weight_t: np.ndarray, bias: np.ndarray, small: np.ndarray) -> onnx.ModelProto:
    """y = x @ weight_t + bias + sum(small), fp16 initializers cast to fp32 as the exported graphs store them."""
    inits = [numpy_helper.from_array(a, n) for a, n in ((weight_t, "wt"), (bias, "b"), (small, "small"))]
    casts = [helper.make_node("Cast", [n], [f"{n}32"], to=TensorProto.FLOAT) for n in ("wt", "b", "small")]
    nodes = casts + [helper.make_node("MatMul", ["x", "wt32"], ["h"]), helper.make_node("Add", ["h", "b32"], ["hb"]),
                     helper.make_node("ReduceSum", ["small32"], ["s"], keepdims=0),
                     helper.make_node("Add", ["hb", "s"], ["y"])]
    graph = helper.make_graph(nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 64])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_initializers_read_their_bytes_from_the_weights_file(tmp_path):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 32)).astype(np.float16)  # torch's (out, in); the graph holds its transpose
    bias = rng.standard_normal((16, 64)).astype(np.float16)
    small = np.arange(3, dtype=np.float16)  # under min_size: stays in the graph
    save_file({"lin.weight": weight, "lin.bias": bias}, str(tmp_path / WEIGHTS_FILE))
    inline, shared = tmp_path / "inline.onnx", tmp_path / "shared.onnx"
    onnx.save(linear_graph(np.ascontiguousarray(weight.T), bias, small), str(inline))
    model = linear_graph(np.ascontiguousarray(weight.T), bias, small)
    assert read_weights_from(model, tmp_path / WEIGHTS_FILE) == 2
    onnx.save(model, str(shared))
    # the transpose's bytes in another shape than (in, out) are not the transpose: they stay in the graph
    odd = helper.make_model(helper.make_graph([], "odd", [], [helper.make_tensor_value_info("w", TensorProto.FLOAT16,
                                                                                             [2, 32, 32])],
                                              [numpy_helper.from_array(weight.T.reshape(2, 32, 32), "w")]))
    assert read_weights_from(odd, tmp_path / WEIGHTS_FILE) == 0

    onnx.checker.check_model(onnx.load(str(shared)), full_check=True)
    assert shared.stat().st_size < inline.stat().st_size - weight.nbytes - bias.nbytes + 1024
    x = {"x": rng.standard_normal((16, 32)).astype(np.float32)}
    want = ort.InferenceSession(str(inline)).run(None, x)[0]
    got = ort.InferenceSession(str(shared)).run(None, x)[0]
    np.testing.assert_array_equal(got, want)


def test_packaged_graphs_hold_no_copy_of_the_weights(tmp_path, tiny_ckpt):
    from nerv_rt.export.package import package

    folder = package([tiny_ckpt], tmp_path / "assets", step=lambda _: None) / "tiny-128"
    manifest, weights = read_manifest(folder), folder / WEIGHTS_FILE
    graphs = manifest["graphs"]
    assert set(graphs) == {"dit", "decoder", "encoder"}
    for entry in graphs.values():
        assert entry["external_data"] == {"file": WEIGHTS_FILE, "sha256": sha256_file(weights)}
        assert graph_sha256(entry) != entry["sha256"]  # an engine cache key changes with the weights
    assert sum((folder / e["file"]).stat().st_size for e in graphs.values()) < weights.stat().st_size / 3
    assert graphs["decoder"]["validation"]["psnr_db"] > 60  # the graphs still compute what the weights do

    video = Pipeline.load(folder, backend="onnxruntime").generate(frames=4, steps=2, seed=0)
    assert video.shape == (1, 4, 128, 128, 3)

    elsewhere = tmp_path / "elsewhere.safetensors"  # a link out of the folder: ONNX Runtime would refuse it
    weights.rename(elsewhere)
    weights.symlink_to(elsewhere)
    with pytest.raises(CheckpointError, match="link to a file in another folder"):
        verify_graph(folder, manifest, "dit")
    weights.unlink()
    elsewhere.rename(weights)

    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        verify_graph(folder, manifest, "dit")


def test_package_command_errors_are_one_line(tmp_path, capsys):
    """The recipe's last command ended in a traceback on a missing checkpoint; nothing is written."""
    from nerv_rt.export.package import main

    assert main([str(tmp_path / "nofile.pt"), "--out", str(tmp_path / "assets")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'nofile.pt'}: no such file or folder\n"
    assert list(tmp_path.iterdir()) == []
