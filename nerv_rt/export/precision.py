"""Precision in the graph: fp16 / bf16 typed graphs and lossless fp16 weight storage.

TensorRT 11 builds strongly typed networks only (no FP16 / BF16 builder flags), so the precision of an
engine is the precision of its ONNX graph. nerv-rt makes typed graphs by casting the modules in torch
before export: the models keep their numerically sensitive ops in fp32 (demodulation, norms, attention,
sin / cos encodings; models/transformer.py, models/nerv.py) and the graph modules keep fp32 inputs and
outputs (models/graphs.py), which is what ModelOpt AutoCast's keep_io_types gives. ModelOpt itself is not
used: `nvidia-modelopt[onnx]` pulls in onnxruntime-gpu (which shadows the base install's onnxruntime)
and cupy.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

PRECISIONS = ("fp32", "fp16", "bf16")
BF16_OPSET = 22  # Conv / ConvTranspose take bfloat16 from opset 22 on
MIN_TYPED_DECODER_PSNR_DB = 35.0  # typed decoder graph against fp32 torch; export fails below


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def opset_for(precision: str, opset: int) -> int:
    return max(opset, BF16_OPSET) if precision == "bf16" else opset


def store_fp16_initializers(model: onnx.ModelProto, min_size: int = 1024) -> int:
    """Store every fp32 initializer (of at least `min_size` values) that fp16 represents exactly as fp16,
    followed by a Cast to fp32: the graph computes bit for bit the same and its file is half the size (weights
    saved as fp16, like the embedded default's). Returns how many were converted."""
    graph, casts, kept = model.graph, [], []
    for init in graph.initializer:
        w = numpy_helper.to_array(init)
        if w.dtype != np.float32 or w.size < min_size or not np.array_equal(w.astype(np.float16).astype(np.float32), w):
            kept.append(init)
            continue
        half = numpy_helper.from_array(w.astype(np.float16), f"{init.name}__fp16")
        kept.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__cast"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts)
