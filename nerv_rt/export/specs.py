"""The single source of each exported graph's I/O: names, symbolic shapes, dtypes, profiles, sample inputs.

Used by the ONNX export, the manifest, the TensorRT build (profiles) and the runtimes (buffer
shapes). Torch-free. Symbols: B = DiT batch (2n with classifier-free guidance), F = frames per
decoder call.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.presets import ModelConfig

GRAPHS = ("dit", "decoder", "encoder")
DEFAULT_MAX_FRAMES = 16  # frames per decoder call: `generate --chunk`'s default, so engines reserve no memory for more
DEFAULT_MAX_BATCH = 4  # videos per DiT call; the DiT profile goes to 2x this for CFG


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    dtype: str  # numpy dtype name

    def concrete(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(dims[d] if isinstance(d, str) else d for d in self.shape)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    def bind_dims(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
        """Values of the symbolic dims, read off concrete input shapes."""
        dims: dict[str, int] = {}
        for spec in self.inputs:
            for sym, size in zip(spec.shape, shapes[spec.name]):
                if isinstance(sym, str):
                    dims[sym] = int(size)
        return dims

    def output_shapes(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        dims = self.bind_dims(input_shapes)
        return {o.name: o.concrete(dims) for o in self.outputs}

    def sample_inputs(self, dims: dict[str, int], seed: int = 0, num_classes: int = 1) -> dict[str, np.ndarray]:
        """Random inputs of the right shapes and ranges (used for export tracing and parity checks)."""
        rng = np.random.default_rng(seed)
        out = {}
        for spec in self.inputs:
            shape = spec.concrete(dims)
            if spec.name == "t":
                out[spec.name] = rng.uniform(0, 999, shape).astype(np.float32)
            elif spec.name == "y":
                out[spec.name] = rng.integers(0, num_classes + 1, shape).astype(np.int64)
            elif spec.name == "frame_t":
                out[spec.name] = np.sort(rng.uniform(0, 1, shape)).astype(np.float32)
            elif spec.name == "video":
                out[spec.name] = rng.uniform(-1, 1, shape).astype(np.float32)
            else:
                out[spec.name] = rng.standard_normal(shape).astype(np.float32)
        return out

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}


def graph_specs(cfg: ModelConfig) -> dict[str, GraphSpec]:
    N, d, R, T = cfg.tokens, cfg.token_dim, cfg.res, cfg.frames
    f32 = "float32"
    return {
        "dit": GraphSpec("dit", (TensorSpec("x_t", ("B", N, d), f32), TensorSpec("t", ("B",), f32),
                                 TensorSpec("y", ("B",), "int64")),
                         (TensorSpec("eps", ("B", N, d), f32),)),
        # Kernels belong to one video, so the decoder renders one video per call (the runtime loops).
        "decoder": GraphSpec("decoder", (TensorSpec("tokens", (1, N, d), f32), TensorSpec("frame_t", ("F",), f32)),
                             (TensorSpec("frames", ("F", 3, R, R), f32),)),
        "encoder": GraphSpec("encoder", (TensorSpec("video", (1, T, 3, R, R), f32),),
                             (TensorSpec("mean", (1, N, d), f32),)),
    }


def dim_ranges(graph: str, max_batch: int, max_frames: int, opt_frames: int = 16) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) per symbolic dim: the TensorRT optimization profile of each graph.

    DiT: batch 1 .. 2*max_batch (conditional + unconditional halves), tuned for one video with CFG.
    Decoder: frame chunk 1 .. max_frames, tuned for a 16-frame chunk.
    """
    if graph == "dit":
        return {"B": (1, min(2, 2 * max_batch), 2 * max_batch)}
    if graph == "decoder":
        return {"F": (1, min(opt_frames, max_frames), max_frames)}
    return {}


def profile_shapes(spec: GraphSpec, max_batch: int, max_frames: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Per input with a symbolic dim: (min shape, opt shape, max shape). Static inputs (the decoder's tokens, all of
    the encoder's) get none: TensorRT takes their shapes from the graph, and a graph without dynamic inputs needs
    no optimization profile."""
    ranges = dim_ranges(spec.name, max_batch, max_frames)
    pick = lambda k: {s: r[k] for s, r in ranges.items()}  # noqa: E731
    return {t.name: tuple(t.concrete(pick(k)) for k in range(3)) for t in spec.inputs
            if any(isinstance(d, str) for d in t.shape)}
