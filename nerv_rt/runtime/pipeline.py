"""`Pipeline`: weight tokens from noise with the DiT, then frames from tokens with the NeRV decoder.

    pipe = Pipeline.load("default")                 # or a checkpoint, or an export folder
    video = pipe.generate(frames=16, seed=0)        # uint8 [n, F, H, W, 3]

A pipeline holds one model per resolution of its source; each runs on one backend. With
an export folder and onnxruntime this module never imports torch.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..diffusion import SAMPLERS
from ..engines.base import Array, Backend, open_backend
from ..errors import NervError
from ..models.presets import ModelConfig
from .frames import frame_times, to_uint8
from .sampling import DeviceInputs, denoise, prepare_inputs
from .sources import DEFAULT, ModelSource, resolve
from .video_io import check_output_path, output_paths, write_frames

MAX_FRAMES = 4096  # frames per generated video; memory stays flat (chunked decode) but the output array grows
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 2.0


@dataclass
class _Model:
    """One resolution: its config, backend, engines and token scale."""
    source: ModelSource
    backend: Backend
    token_std: Array  # (d_z,) on the backend

    @property
    def config(self) -> ModelConfig:
        return self.source.config

    def __post_init__(self) -> None:
        self._engines: dict = {}
        self._captured = None

    def engine(self, graph: str):
        if graph not in self._engines:
            self._engines[graph] = self.backend.engine(graph)
        return self._engines[graph]

    def captured(self):
        if self._captured is None:
            from .captured import CapturedSampler

            self._captured = CapturedSampler(self.backend, self.engine("dit"))
        return self._captured


def _token_std(source: ModelSource) -> np.ndarray:
    if source.kind == "export":
        std = source.manifest.get("token_std")
    else:
        t = source.checkpoint().token_std
        std = None if t is None else t.numpy()
    return np.ones(source.config.token_dim, np.float32) if std is None else np.asarray(std, np.float32)


class Pipeline:
    def __init__(self, models: list[_Model]):
        self.models = {m.config.res: m for m in models}
        first = models[0].backend
        self.backend_name, self.device = first.name, first.device

    @classmethod
    def load(cls, source: str | Path = DEFAULT, backend: str = "auto", device: str = "auto",
             precision: str = "fp32", cuda_graph: bool | None = None) -> Pipeline:
        """Open `source` ('default', a checkpoint .pt / folder, an export folder, or a folder of
        those per resolution) on `backend` (auto | torch | torch-cudagraph | onnxruntime | tensorrt).

        cuda_graph: None = the backend's default (whole-loop capture on torch-cudagraph and tensorrt;
        off for onnxruntime, where True turns on ONNX Runtime's own CUDA graphs)."""
        models = []
        for src in resolve(source):
            be = open_backend(backend, src, device, precision, cuda_graph)
            models.append(_Model(src, be, be.asarray(_token_std(src))))
        return cls(models)

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.models)

    def model(self, res: int | None = None) -> _Model:
        if res is None:
            return self.models[self.resolutions[0]]
        if res not in self.models:
            raise NervError(f"--res {res} is not available; this model has {', '.join(map(str, self.resolutions))}")
        return self.models[res]

    # ----------------------------------------------------------------------------------------

    def generate(self, frames: int = 16, res: int | None = None, n: int = 1, class_label: int | str | None = None,
                 steps: int = DEFAULT_STEPS, sampler: str = "ddim", guidance: float = DEFAULT_GUIDANCE,
                 eta: float = 0.0, seed: int = 0, chunk: int = 16,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Sample n videos of `frames` frames; uint8 [n, frames, res, res, 3]."""
        self.check_frames(frames)
        tokens = self.sample_tokens(res, n, class_label, steps, sampler, guidance, eta, seed, progress)
        return self.decode(tokens, frames, res, chunk)

    def sample_tokens(self, res: int | None = None, n: int = 1, class_label: int | str | None = None,
                      steps: int = DEFAULT_STEPS, sampler: str = "ddim", guidance: float = DEFAULT_GUIDANCE,
                      eta: float = 0.0, seed: int = 0, progress: Callable[[int], None] | None = None) -> Array:
        """Weight tokens (n, N, d_z) in the decoder's scale, as the backend's array type (device-resident
        on GPU backends: hand them to `decode` without a host copy)."""
        # 1. Check inputs
        m = self.model(res)
        cfg = m.config
        if sampler not in SAMPLERS:
            raise NervError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        if not 1 <= steps <= 1000:
            raise NervError(f"--steps must be in 1..1000, got {steps}")
        if n < 1:
            raise NervError(f"--n must be at least 1, got {n}")
        class_label = self.class_index(class_label, cfg)
        if guidance < 0:
            raise NervError(f"--guidance must be >= 0, got {guidance}")
        # 2. Seeded host inputs: labels, x_T, per-step noise, coefficient table
        host = prepare_inputs(seed, n, cfg.tokens, cfg.token_dim, cfg.num_classes, class_label, steps, sampler,
                              eta, guidance)
        # 3. Denoising loop: one captured CUDA graph, or step by step
        if m.backend.can_capture:
            x = m.captured()((n, steps, sampler, eta, guidance), host).clone()
            if progress is not None:
                progress(steps)
        else:
            x = denoise(m.engine("dit"), DeviceInputs.from_host(m.backend, host), guidance, progress)
        # 4. Back to the decoder's token scale
        return x * m.token_std

    def decode(self, tokens: Array | np.ndarray, frames: int = 16, res: int | None = None, chunk: int = 16,
               frame_t: np.ndarray | None = None) -> np.ndarray:
        """Render tokens (n, N, d_z) to uint8 [n, F, H, W, 3], `chunk` frames per decoder call.

        Frames are queried at evenly spaced times in [0, 1] (more frames than training interpolate);
        pass `frame_t` to choose the times yourself (any floats, extrapolation included)."""
        times = self._decode_times(frames, frame_t, chunk)
        res_ = self.model(res).config.res
        out = np.empty((tokens.shape[0], len(times), res_, res_, 3), np.uint8)
        for i, s, block in self._chunks(tokens, times, res, chunk):
            out[i, s:s + len(block)] = block
        return out

    def iter_frames(self, tokens: Array | np.ndarray, frames: int = 16, res: int | None = None, chunk: int = 16,
                    frame_t: np.ndarray | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (video index, first frame index, uint8 [c, H, W, 3]) one decoder call at a time."""
        return self._chunks(tokens, self._decode_times(frames, frame_t, chunk), res, chunk)

    def render(self, tokens: Array | np.ndarray, path: str | Path, frames: int = 16, res: int | None = None,
               chunk: int = 16, fps: int = 8, timings: dict | None = None) -> list[Path]:
        """Decode tokens (n, N, d_z) straight into video files (`save_video` naming), one chunk at a
        time: unlike `decode`, memory does not grow with the frame count (.mp4 and PNG folders; a .gif
        is assembled in memory). `timings`, if given, receives decode_s and write_s."""
        check_output_path(path)
        times = self._decode_times(frames, None, chunk)
        paths = output_paths(path, tokens.shape[0])
        decode_s = 0.0

        def timed(blocks):  # the decoder's share of the time spent pulling frames into the writer
            nonlocal decode_s
            while True:
                t = time.perf_counter()
                item = next(blocks, None)
                decode_s += time.perf_counter() - t
                if item is None:
                    return
                yield item[2]

        t0 = time.perf_counter()
        for i, p in enumerate(paths):
            write_frames(timed(self._chunks(tokens[i:i + 1], times, res, chunk)), p, fps)
        if timings is not None:
            timings.update(decode_s=decode_s, write_s=time.perf_counter() - t0 - decode_s)
        return paths

    def _chunks(self, tokens: Array | np.ndarray, times: np.ndarray, res: int | None,
                chunk: int) -> Iterator[tuple[int, int, np.ndarray]]:
        m = self.model(res)
        if isinstance(tokens, np.ndarray):
            tokens = m.backend.asarray(tokens.astype(np.float32))
        decoder = m.engine("decoder")
        for i in range(tokens.shape[0]):
            for s in range(0, len(times), chunk):
                frames_out = decoder(tokens=tokens[i:i + 1], frame_t=m.backend.asarray(times[s:s + chunk]))["frames"]
                yield i, s, to_uint8(m.backend.numpy(frames_out))

    def _decode_times(self, frames: int, frame_t: np.ndarray | None, chunk: int) -> np.ndarray:
        times = frame_times(frames) if frame_t is None else np.asarray(frame_t, np.float32).reshape(-1)
        self.check_frames(len(times))
        if chunk < 1:
            raise NervError(f"--chunk must be at least 1, got {chunk}")
        return times

    def default_refine_steps(self, res: int | None = None) -> int:
        """The refinement steps `encode` runs when not told: the model's own (config.refine_steps), or 0
        on backends without autograd (ONNX Runtime, TensorRT), which can only run the encoder."""
        m = self.model(res)
        return m.config.refine_steps if m.backend.can_refine else 0

    def encode(self, video: np.ndarray, res: int | None = None, refine_steps: int | None = None) -> np.ndarray:
        """Tokens of uint8 videos [n, T, H, W, 3] (T = the model's clip length, H = W = res) -> float32
        (n, N, d_z): the encoder's posterior means, then `refine_steps` Adam steps on each video's tokens
        against the decoder (semi-amortized encoding, torch backends; None = default_refine_steps)."""
        refine_steps = self.default_refine_steps(res) if refine_steps is None else refine_steps
        if refine_steps < 0:
            raise NervError(f"--refine-steps must be >= 0, got {refine_steps}")
        m = self.model(res)
        cfg = m.config
        video = np.asarray(video)
        if video.ndim == 4:
            video = video[None]
        expected = (cfg.frames, cfg.res, cfg.res, 3)
        if video.ndim != 5 or video.shape[1:] != expected:
            raise NervError(f"encode expects videos [n, {cfg.frames}, {cfg.res}, {cfg.res}, 3], got {video.shape}")
        encoder = m.engine("encoder")
        x = (video.astype(np.float32) / 127.5 - 1.0).transpose(0, 1, 4, 2, 3)  # (n, T, 3, H, W)
        tokens = np.stack([m.backend.numpy(encoder(video=m.backend.asarray(v[None]))["mean"])[0].copy() for v in x])
        if refine_steps:
            tokens = m.backend.numpy(m.backend.refine_tokens(m.backend.asarray(tokens), m.backend.asarray(x), refine_steps))
        return tokens

    @staticmethod
    def class_index(label: int | str | None, cfg: ModelConfig) -> int | None:
        """A class given by index or by name (the training set's folder names) -> index."""
        if label is None:
            return None
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if label not in cfg.class_names:
                names = ", ".join(cfg.class_names) or "none recorded"
                raise NervError(f"--class {label!r} is not a class of this model (names: {names})")
            return cfg.class_names.index(label)
        if not 0 <= int(label) < cfg.num_classes:
            raise NervError(f"--class must be in 0..{cfg.num_classes - 1}, got {label}")
        return int(label)

    @staticmethod
    def check_frames(frames: int) -> None:
        if not 1 <= frames <= MAX_FRAMES:
            raise NervError(f"--frames must be in 1..{MAX_FRAMES}, got {frames}")

    def synchronize(self) -> None:
        for m in self.models.values():
            m.backend.synchronize()
