"""Static check of exported graphs against TensorRT's ONNX parser (TensorRT 10.15+ and 11.x: opsets 9-24).

SUPPORTED lists the operators that onnx-tensorrt's docs/operators.md marks supported ("Y"), plus
the 10.x additions (LayerNormalization, GroupNormalization, Gelu, ...). Restrictions the parser
documents and that our graphs could hit are checked too (Resize antialias / cubic mode, opset range).
"""
from __future__ import annotations

import onnx

# onnx-tensorrt docs/operators.md: "TensorRT 10.15 supports operators in the inclusive range of opset 9 to
# opset 24" (10.0: 9 to 20). fp32 / fp16 graphs use opset 18; bf16 graphs need 22 (Conv takes bfloat16 there).
OPSET_RANGE = (9, 24)

SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND
Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
HardSigmoid HardSwish Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LpNormalization LpPool LRN LSTM MatMul Max MaxPool Mean MeanVarianceNormalization
Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum
ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted problems TensorRT's parser would reject: unknown ops and violated restrictions."""
    problems = set()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.add(f"opset {opset} (TensorRT parses {OPSET_RANGE[0]}-{OPSET_RANGE[1]})")
    for node in _all_nodes(model.graph):
        if node.domain not in ("", "ai.onnx"):
            problems.add(f"{node.domain}::{node.op_type}")
        elif node.op_type not in SUPPORTED:
            problems.add(node.op_type)
        elif node.op_type == "Resize":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("antialias", 0):
                problems.add("Resize(antialias=1)")
            if attrs.get("mode", b"nearest") not in (b"nearest", b"linear"):
                problems.add(f"Resize(mode={attrs['mode'].decode()})")
    return sorted(problems)


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for g in attr.graphs:
                yield from _all_nodes(g)
