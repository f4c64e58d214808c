"""nerv-rt: compiled inference toolkit for NeRV-Diffusion video generation.

    pipe = nerv_rt.Pipeline.load("default")
    video = pipe.generate(frames=16, seed=0)      # uint8 [n, F, H, W, 3]
    nerv_rt.save_video(video[0], "clip.mp4", fps=8)

Importing this package does not import torch (the ONNX Runtime path runs without it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = ["NervError", "Pipeline", "VideoDraw", "read_video", "save_video", "__version__"]

if TYPE_CHECKING:  # what type checkers see; at run time the names load on first use (below)
    from .errors import NervError
    from .runtime.pipeline import Pipeline
    from .runtime.sampling import VideoDraw
    from .runtime.video_io import read_video, save_video

_LAZY = {"NervError": "errors", "Pipeline": "runtime.pipeline", "VideoDraw": "runtime.sampling",
         "read_video": "runtime.video_io", "save_video": "runtime.video_io"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nerv_rt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
