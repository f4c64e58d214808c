"""nerv-rt: compiled inference toolkit for NeRV-Diffusion video generation.

    pipe = nerv_rt.Pipeline.load("default")
    video = pipe.generate(frames=16, seed=0)      # uint8 [n, F, H, W, 3]
    nerv_rt.save_video(video[0], "clip.mp4", fps=8)

Importing this package does not import torch (the ONNX Runtime path runs without it).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["NervError", "Pipeline", "read_video", "save_video", "__version__"]


def __getattr__(name: str):
    if name == "Pipeline":
        from .runtime.pipeline import Pipeline
        return Pipeline
    if name == "NervError":
        from .errors import NervError
        return NervError
    if name in ("read_video", "save_video"):
        from .runtime import video_io
        return getattr(video_io, name)
    raise AttributeError(f"module 'nerv_rt' has no attribute {name!r}")
