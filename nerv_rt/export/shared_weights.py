"""Graphs that read their weights from the safetensors file beside them instead of holding a copy.

A graph exported beside its checkpoint's float16 weights (the embedded default, `python -m
nerv_rt.export.package`) holds each weight as a float16 initializer that is, byte for byte, a tensor of
model.safetensors or that tensor transposed (the exporter folds a Linear's weight.T into its MatMul operand).
ONNX external data may point at any byte range of a file beside the graph, and a safetensors file is an 8-byte
header length, a JSON header of byte offsets, then the raw little-endian tensors. So each such initializer
becomes a reference to its bytes in model.safetensors; a transposed one is read through a Transpose node, which
ONNX Runtime and TensorRT fold into a constant when they load the graph. The weights are then stored once.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ONNX_DTYPES = {"F16": onnx.TensorProto.FLOAT16, "BF16": onnx.TensorProto.BFLOAT16, "F32": onnx.TensorProto.FLOAT}
# bf16 has no numpy dtype: its tensors are matched untransposed, as raw bytes (where onnx's to_array returns float32
# for a bf16 initializer, as older onnx releases do, they do not match and simply stay in the graph)
NUMPY_DTYPES = {"F16": np.float16, "F32": np.float32}
Range = tuple[int, int, tuple[int, ...] | None]  # offset, length, and for a transposed match the stored 2-D shape


def tensor_ranges(weights: Path) -> dict[tuple[int, bytes], Range]:
    """{(onnx dtype, raw bytes): (offset, length, None)} of every tensor of a safetensors file, each 2-D tensor
    also under the bytes of its transpose, as (offset, length, its stored shape)."""
    raw = weights.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])
    start = 8 + header_len
    ranges: dict[tuple[int, bytes], Range] = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] not in ONNX_DTYPES:
            continue
        begin, end = (start + o for o in info["data_offsets"])
        dtype, data = ONNX_DTYPES[info["dtype"]], raw[begin:end]
        ranges.setdefault((dtype, data), (begin, end - begin, None))
        if len(info["shape"]) == 2 and info["dtype"] in NUMPY_DTYPES:
            t = np.frombuffer(data, NUMPY_DTYPES[info["dtype"]]).reshape(info["shape"]).T
            ranges.setdefault((dtype, np.ascontiguousarray(t).tobytes()), (begin, end - begin, tuple(info["shape"])))
    return ranges


def _external(name: str, dtype: int, dims: list[int], location: str, offset: int, length: int) -> onnx.TensorProto:
    tensor = onnx.TensorProto(name=name, data_type=dtype, dims=dims, data_location=onnx.TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def read_weights_from(model: onnx.ModelProto, weights: Path, min_size: int = 1024) -> int:
    """Point every initializer of `model` (of at least `min_size` values) whose bytes are a tensor of the
    safetensors file `weights`, or its transpose, at those bytes, by the file's name: the graph must be saved
    in the same folder. Computes bit for bit the same. Returns how many initializers now read from `weights`."""
    ranges = tensor_ranges(weights)
    graph, kept, transposes = model.graph, [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        hit = ranges.get((init.data_type, array.tobytes())) if array.size >= min_size else None
        offset, length, stored_shape = hit or (0, 0, None)
        if hit is None or (stored_shape is not None and array.shape != stored_shape[::-1]):
            kept.append(init)  # not in the file, or its transpose's bytes in another shape than (b, a) of (a, b)
            continue
        if stored_shape is not None:  # the same bytes as a reshape are the same tensor; a transpose needs the node
            stored = f"{init.name}__stored"
            kept.append(_external(stored, init.data_type, list(stored_shape), weights.name, offset, length))
            transposes.append(helper.make_node("Transpose", [stored], [init.name], perm=[1, 0],
                                               name=f"{init.name}__transpose"))
        else:
            kept.append(_external(init.name, init.data_type, list(array.shape), weights.name, offset, length))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = transposes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return sum(init.data_location == onnx.TensorProto.EXTERNAL for init in kept)
