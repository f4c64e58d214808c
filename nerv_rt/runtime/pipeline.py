"""`Pipeline`: weight tokens from noise with the DiT, then frames from tokens with the NeRV decoder.

    pipe = Pipeline.load("default")                 # or a checkpoint, or an export folder
    video = pipe.generate(frames=16, seed=0)        # uint8 [n, F, H, W, 3]

A pipeline holds one model per resolution of its source; each runs on one backend. With
exported graphs and onnxruntime this module never imports torch.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..diffusion import SAMPLERS
from ..engines import Backend, open_backend
from ..engines.base import Array
from ..errors import NervError, option
from ..models.presets import ModelConfig
from .args import check_callable, check_ints, check_numbers, check_paths
from .frames import frame_times, to_uint8
from .memory import check_fits, decoder_bytes_per_frame, max_chunk
from .sampling import MAX_SEED, DeviceInputs, VideoDraw, denoise, prepare_inputs
from .sources import DEFAULT, ModelSource, is_default, resolve
from .video_io import MAX_FPS, check_fps, check_output_path, output_paths, write_frames

DEFAULT_FRAMES = 16  # what decode renders when told neither frames nor frame_t: a training clip's length
MAX_FRAMES = 4096  # frames per generated video; memory stays flat (chunked decode) but the output array grows
MAX_STEPS = 1000
MAX_GUIDANCE = 50.0
SAMPLE_BATCH = 16  # videos per sampling run where the backend sets no limit
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 2.0
Progress = Callable[[int, int], None]  # (sampler steps done, steps in all)


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
        self._loading = threading.Lock()  # one engine per graph, also when threads first ask for it at once

    def engine(self, graph: str):
        with self._loading:
            if graph not in self._engines:
                self._engines[graph] = self.backend.engine(graph)
            return self._engines[graph]

    def load_graphs(self) -> None:
        """Load (and verify) the DiT and decoder now, so that their errors come before any work."""
        self.engine("dit"), self.engine("decoder")

    def captured(self):
        with self._loading:
            if self._captured is None:
                from .captured import CapturedSampler

                self._captured = CapturedSampler(self.backend)
            return self._captured

    @property
    def graphs_captured(self) -> int:
        """Whole-loop CUDA graphs captured so far (0 where capture is off or every capture failed)."""
        return 0 if self._captured is None else len(self._captured.graphs)

    @property
    def sample_batch(self) -> int:
        return self.backend.max_batch or SAMPLE_BATCH

    def decode_chunk(self, chunk: int) -> int:
        """Frames per decoder call: `chunk`, split further where the backend's engine takes fewer."""
        return min(chunk, self.backend.max_frames or chunk)


def _token_std(source: ModelSource) -> np.ndarray:
    std = None
    if source.has_graphs:
        std = source.manifest.get("token_std")
    elif source.has_checkpoint:
        t = source.checkpoint().token_std
        std = None if t is None else t.numpy()
    return np.ones(source.config.token_dim, np.float32) if std is None else np.asarray(std, np.float32)


def check_sampling(steps: int, sampler: str, guidance: float, eta: float = 0.0, n: int = 1, seed: int = 0) -> None:
    """Refuse bad sampling arguments before any work, each in one line naming the option."""
    check_ints(steps=steps, n=n)
    check_numbers(guidance=guidance, eta=eta)
    if sampler not in SAMPLERS:
        raise NervError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if not 1 <= steps <= MAX_STEPS:
        raise NervError(f"{option('steps')} must be in 1..{MAX_STEPS}, got {steps}")
    if not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise NervError(f"{option('guidance')} must be a number in 0..{MAX_GUIDANCE:g}, got {guidance}")
    if not (math.isfinite(eta) and 0 <= eta <= 1):
        raise NervError(f"{option('eta')} must be a number in 0..1, got {eta}")
    if n < 1:
        raise NervError(f"{option('n')} must be at least 1, got {n}")
    check_seed(seed)


def check_seed(seed: int) -> None:
    check_ints(seed=seed)
    if not 0 <= seed <= MAX_SEED:
        raise NervError(f"{option('seed')} must be in 0..2^63-1, got {seed}")


def check_frames(frames: int) -> None:
    check_ints(frames=frames)
    if not 1 <= frames <= MAX_FRAMES:
        raise NervError(f"{option('frames')} must be in 1..{MAX_FRAMES}, got {frames}")


def as_tokens(tokens: Array | np.ndarray | Sequence) -> Array | np.ndarray:
    """Tokens as given when they are the backend's own array (or torch's), else a numpy array of them, checked
    here: real, finite numbers (NaN tokens decode to black frames without a word)."""
    if hasattr(tokens, "shape") and not isinstance(tokens, np.ndarray):
        return tokens
    if not isinstance(tokens, np.ndarray):
        try:
            tokens = np.asarray(tokens, np.float32)
        except (TypeError, ValueError) as e:
            raise NervError(f"tokens must be an array (n, N, d_z) of numbers: {e}") from None
    if tokens.dtype.kind not in "biuf":
        raise NervError(f"tokens must be an array (n, N, d_z) of real numbers, got dtype {tokens.dtype}")
    if not np.isfinite(tokens).all():
        raise NervError("tokens must be finite numbers (they hold NaN or infinity)")
    return tokens


def default_fps(cfg: ModelConfig, frames: int) -> Fraction:
    """The frame rate that keeps a training clip's duration: more frames play as a faster rate, not slower motion;
    at most MAX_FPS (a longer video then)."""
    return min(Fraction(cfg.fps).limit_denominator(1001) * frames / cfg.frames, Fraction(MAX_FPS))


class Pipeline:
    """Generation, decoding and encoding with one model per resolution of a source, each on one backend
    (`Pipeline.load`); safe to share between threads (engine runs take turns)."""

    def __init__(self, models: list[_Model]):
        self.models = {m.config.res: m for m in models}
        # The engines reuse their input / output buffers and captured graphs from call to call: calls from several
        # threads take turns per engine run (a sampling run, a decoder chunk, an encoding), each result copied out
        self._lock = threading.Lock()
        first = models[0].backend
        self.backend_name, self.device, self.precision = first.name, first.device, first.precision
        self._opened_as: tuple | None = None  # Pipeline.load's arguments, as resolved: what a pickled copy reopens

    def __reduce__(self):
        """Pickling (multiprocessing, Ray, copy.deepcopy) carries how the pipeline was opened, not its engines: the
        copy loads the same source on the same backend, device and precision where it is unpickled."""
        if self._opened_as is None:
            raise TypeError("a Pipeline made with Pipeline.from_backend cannot be pickled; one from Pipeline.load can")
        return type(self).load, self._opened_as

    @classmethod
    def load(cls, source: str | Path = DEFAULT, backend: str = "auto", device: str = "auto",
             precision: str = "fp32", cuda_graph: bool | None = None) -> Pipeline:
        """Open `source` ('default', a checkpoint .pt / folder, an export folder, or a folder of
        those per resolution) on `backend` (auto | torch | torch-cudagraph | onnxruntime | tensorrt | aoti);
        `pipe.backend_name` says which one `auto` picked.

        cuda_graph: None = the backend's default (whole-loop capture on torch-cudagraph, tensorrt and aoti
        on CUDA; off for onnxruntime, where True turns on ONNX Runtime's own CUDA graphs). A source with no
        graphs of `precision` (onnxruntime), no packages for this device (aoti) or no engines (tensorrt) fails
        here; graphs load when first used (`load_graphs` loads the DiT and decoder now)."""
        check_paths(source=source)
        if cuda_graph not in (None, True, False):
            raise NervError(f"cuda_graph must be None, True or False, got {cuda_graph!r:.80}")
        models = []
        for src in resolve(source):
            be = open_backend(backend, src, device, precision, cuda_graph)
            models.append(_Model(src, be, be.asarray(_token_std(src))))
        pipe = cls(models)
        where = source if is_default(source) else Path(source).absolute()  # the same files from another cwd
        pipe._opened_as = (where, pipe.backend_name, pipe.device, pipe.precision, cuda_graph)
        return pipe

    @classmethod
    def from_backend(cls, source: ModelSource, backend: Backend) -> Pipeline:
        """One model on a backend opened by hand (e.g. modules built in memory: TorchBackend(graphs=...))."""
        return cls([_Model(source, backend, backend.asarray(_token_std(source)))])

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.models)

    def describe(self) -> str:
        """What runs: e.g. 'onnxruntime on cpu, fp32'."""
        return f"{self.backend_name} on {self.device}, {self.precision}"

    def model(self, res: int | None = None) -> _Model:
        if res is None:
            return self.models[self.resolutions[0]]
        check_ints(res=res)
        if res not in self.models:
            raise NervError(f"{option('res')} {res} is not available; this model has {', '.join(map(str, self.resolutions))}")
        return self.models[res]

    def model_for_tokens(self, tokens: Array, res: int | None) -> _Model:
        """The model that decodes `tokens` (n, N, d): `res` when given, else the one resolution whose token
        shape they have."""
        if len(tokens.shape) != 3:
            raise NervError(f"tokens must be one array (n, N, d_z) of n videos' tokens, got shape {tuple(tokens.shape)}")
        shape = tuple(tokens.shape[1:])
        if res is not None:
            m = self.model(res)
            if shape != (m.config.tokens, m.config.token_dim):
                raise NervError(f"tokens of shape (n, {', '.join(map(str, shape))}) do not fit the {res}^2 model, "
                                f"which takes (n, {m.config.tokens}, {m.config.token_dim})")
            return m
        fits = [m for m in self.models.values() if shape == (m.config.tokens, m.config.token_dim)]
        if len(fits) == 1:
            return fits[0]
        takes = "; ".join(f"{r}^2 takes (n, {m.config.tokens}, {m.config.token_dim})" for r, m in self.models.items())
        which = "several resolutions" if fits else "no resolution of this model"
        raise NervError(f"tokens of shape (n, {', '.join(map(str, shape))}) fit {which} ({takes}); pass res=")

    # ----------------------------------------------------------------------------------------

    def generate(self, frames: int = 16, res: int | None = None, n: int = 1, class_label: int | str | None = None,
                 steps: int = DEFAULT_STEPS, sampler: str = "ddim", guidance: float = DEFAULT_GUIDANCE,
                 eta: float = 0.0, seed: int = 0, chunk: int = 16, progress: Progress | None = None) -> np.ndarray:
        """Sample n videos of `frames` frames; uint8 [n, frames, res, res, 3] (all in memory: for many or
        long videos use `render`, which writes them chunk by chunk)."""
        check_frames(frames)
        check_sampling(steps, sampler, guidance, eta, n, seed)
        cfg = self.model(res).config
        self.check_chunk(chunk, cfg.res, frames)
        check_fits(n * frames * cfg.res * cfg.res * 3, f"an array of {n} x {frames} frames at {cfg.res}^2",
                   "write them with Pipeline.render / `nerv-rt generate`, which stream frames into files, or ask for fewer")
        tokens = self.sample_tokens(res, n, class_label, steps, sampler, guidance, eta, seed, progress)
        return self.decode(tokens, frames, res, chunk)

    def sample_tokens(self, res: int | None = None, n: int = 1, class_label: int | str | None = None,
                      steps: int = DEFAULT_STEPS, sampler: str = "ddim", guidance: float = DEFAULT_GUIDANCE,
                      eta: float = 0.0, seed: int = 0, progress: Progress | None = None, first: int = 0) -> Array:
        """Weight tokens (n, N, d_z) of videos first .. first+n-1 of `seed`, in the decoder's scale, as the
        backend's array type (device-resident on GPU backends: hand them to `decode` without a host copy)."""
        check_sampling(steps, sampler, guidance, eta, n, seed)
        check_callable(progress=progress)
        check_ints(first=first)
        if first < 0:
            raise NervError(f"first must be >= 0, got {first}")
        m = self.model(res)
        label = self.class_index(class_label, m.config)
        videos = [VideoDraw(seed, first + i, label) for i in range(n)]
        runs = [videos[s:s + m.sample_batch] for s in range(0, n, m.sample_batch)]
        total, parts = steps * len(runs), []
        for k, run in enumerate(runs):
            done = k * steps
            parts.append(self.sample(run, m.config.res, steps, sampler, guidance, eta,
                                     None if progress is None else (lambda i, done=done: progress(done + i, total))))
        if len(parts) == 1:
            return parts[0]
        with self._lock:  # device work, as every engine run
            return m.backend.concat(parts)

    def sample(self, videos: Sequence[VideoDraw], res: int | None = None, steps: int = DEFAULT_STEPS,
               sampler: str = "ddim", guidance: float = DEFAULT_GUIDANCE, eta: float = 0.0,
               progress: Callable[[int], None] | None = None) -> Array:
        """One sampling run of the given videos (each its own seed, index and class; a server batches
        requests this way), at most the backend's batch; tokens (n, N, d_z) in the decoder's scale."""
        if isinstance(videos, VideoDraw):
            raise NervError("videos must be a list of VideoDraw; for one video pass [VideoDraw(...)]")
        if not videos:
            raise NervError("videos is empty: give at least one VideoDraw")
        for v in videos:
            if not isinstance(v, VideoDraw):
                raise NervError(f"videos must hold VideoDraw(seed, index, label), got {v!r:.80}")
        check_callable(progress=progress)
        m = self.model(res)
        cfg = m.config
        check_sampling(steps, sampler, guidance, eta, len(videos))
        for v in videos:
            check_seed(v.seed)
            check_ints(index=v.index)
            if v.index < 0:
                raise NervError(f"a VideoDraw's index must be >= 0, got {v.index}")
        videos = [replace(v, label=self.class_index(v.label, cfg)) for v in videos]  # a name, as generate takes it
        guidance, eta = float(guidance), float(eta)  # numpy scalars or Fractions would make object arrays
        if len(videos) > m.sample_batch:
            raise NervError(f"{len(videos)} videos in one sampling run; the {self.backend_name} engines take at most "
                            f"{m.sample_batch} (use sample_tokens, which splits)")
        # 1. Seeded host inputs: labels, x_T, per-step noise, coefficient table
        host = prepare_inputs(videos, cfg.tokens, cfg.token_dim, cfg.num_classes, steps, sampler, eta, guidance)
        with self._lock:
            # 2. Denoising loop: one captured CUDA graph (None if the capture failed), or step by step
            x = m.captured()((len(videos), steps, sampler, eta, guidance), host) if m.backend.can_capture else None
            if x is None:
                x = denoise(m.engine("dit"), DeviceInputs.from_host(m.backend, host), guidance, progress)
            elif progress is not None:
                progress(steps)
            # 3. Back to the decoder's token scale (a new array: a captured graph's output buffer is reused)
            return x * m.token_std

    def decode(self, tokens: Array | np.ndarray, frames: int | None = None, res: int | None = None, chunk: int = 16,
               frame_t: np.ndarray | None = None) -> np.ndarray:
        """Render tokens (n, N, d_z) to uint8 [n, F, H, W, 3], `chunk` frames per decoder call.

        `frames` (16 when neither is given) are queried at evenly spaced times in [0, 1] (more frames than training
        interpolate); or pass `frame_t` to choose the times yourself (any floats, extrapolation included). `res` defaults
        to the resolution whose token shape `tokens` has."""
        tokens = as_tokens(tokens)
        m = self.model_for_tokens(tokens, res)
        times = self._decode_times(m, frames, frame_t, chunk)
        res_ = m.config.res
        check_fits(tokens.shape[0] * len(times) * res_ * res_ * 3, f"an array of {tokens.shape[0]} x {len(times)} "
                   f"frames at {res_}^2", "use render / iter_frames, which hand frames on chunk by chunk")
        out = np.empty((tokens.shape[0], len(times), res_, res_, 3), np.uint8)
        for i, s, block in self._chunks(m, tokens, times, chunk):
            out[i, s:s + len(block)] = block
        return out

    def iter_frames(self, tokens: Array | np.ndarray, frames: int | None = None, res: int | None = None, chunk: int = 16,
                    frame_t: np.ndarray | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (video index, first frame index, uint8 [c, H, W, 3]) one decoder call at a time."""
        tokens = as_tokens(tokens)
        m = self.model_for_tokens(tokens, res)
        return self._chunks(m, tokens, self._decode_times(m, frames, frame_t, chunk), chunk)

    def render(self, tokens: Array | np.ndarray, path: str | Path | Sequence[Path], frames: int | None = None,
               res: int | None = None, chunk: int = 16, fps: float | None = None,
               timings: dict | None = None) -> list[Path]:
        """Decode tokens (n, N, d_z) straight into video files, one chunk at a time: unlike `decode`, memory
        does not grow with the frame count (.mp4 and PNG folders; a .gif is assembled in memory). `path` is
        one path (several videos go to <stem>-0<ext>, <stem>-1<ext>, ...) or one path per video. `frames` as
        `decode`'s (16 when not given). `fps` defaults to the rate that keeps the training clip's duration
        (`default_fps`). `timings`, if given, receives decode_s and write_s."""
        tokens = as_tokens(tokens)
        m = self.model_for_tokens(tokens, res)
        if isinstance(path, (str, os.PathLike)):
            paths = output_paths(path, tokens.shape[0])
        else:  # one path per video
            check_paths(**({f"path[{i}]": p for i, p in enumerate(path)} if isinstance(path, Sequence) else {"path": path}))
            paths = [Path(p) for p in path]
        if len(paths) != tokens.shape[0]:
            raise NervError(f"{len(paths)} output paths for {tokens.shape[0]} videos")
        if len({p.resolve() for p in paths}) != len(paths):
            raise NervError(f"output paths repeat ({', '.join(map(str, paths))}): each video needs its own")
        for p in paths:
            check_output_path(p)
        times = self._decode_times(m, frames, None, chunk)
        fps = default_fps(m.config, len(times)) if fps is None else fps
        check_fps(fps)
        if any(p.suffix.lower() == ".gif" for p in paths):  # GIF writers need every frame at once
            check_fits(4 * len(times) * m.config.res ** 2 * 3, f"a .gif of {len(times)} frames at {m.config.res}^2",
                       "write .mp4 or a PNG folder, which are streamed, or ask for fewer frames")
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
            write_frames(timed(self._chunks(m, tokens[i:i + 1], times, chunk)), p, fps)
        if timings is not None:
            timings.update(decode_s=decode_s, write_s=time.perf_counter() - t0 - decode_s)
        return paths

    def _chunks(self, m: _Model, tokens: Array | np.ndarray, times: np.ndarray,
                chunk: int) -> Iterator[tuple[int, int, np.ndarray]]:
        decoder, step = m.engine("decoder"), m.decode_chunk(chunk)
        with self._lock:  # device work (a host-to-device copy on GPU backends), as every engine run
            if isinstance(tokens, np.ndarray):
                tokens = m.backend.asarray(tokens.astype(np.float32))
        for i in range(tokens.shape[0]):
            for s in range(0, len(times), step):
                with self._lock:
                    frames_out = decoder(tokens=tokens[i:i + 1], frame_t=m.backend.asarray(times[s:s + step]))["frames"]
                    block = to_uint8(m.backend.numpy(frames_out))
                yield i, s, block

    def _decode_times(self, m: _Model, frames: int | None, frame_t: np.ndarray | None, chunk: int) -> np.ndarray:
        """The times to render: `frames` evenly spaced ones (16 when neither is given), or `frame_t` as given."""
        if frame_t is None:
            check_frames(DEFAULT_FRAMES if frames is None else frames)
            times = frame_times(DEFAULT_FRAMES if frames is None else frames)
        else:
            if frames is not None:  # it was ignored
                raise NervError("give frames or frame_t, not both (frame_t holds one time per frame)")
            try:
                times = np.asarray(frame_t, np.float32).reshape(-1)
            except (TypeError, ValueError) as e:
                raise NervError(f"frame_t must be numbers (frame times), got {frame_t!r:.80}: {e}") from None
            if not 1 <= len(times) <= MAX_FRAMES:
                raise NervError(f"frame_t must hold 1..{MAX_FRAMES} frame times, got {len(times)}")
        if not np.isfinite(times).all():
            raise NervError("frame times must be finite numbers")
        self.check_chunk(chunk, m.config.res, len(times))
        return times

    def check_chunk(self, chunk: int, res: int | None = None, frames: int | None = None) -> None:
        """Refuse a decoder chunk below 1, or one whose decoder call (of at most `frames` frames) needs more
        memory than there is."""
        check_ints(chunk=chunk)
        if chunk < 1:
            raise NervError(f"{option('chunk')} must be at least 1, got {chunk}")
        cfg, calls = self.model(res).config, min(chunk, frames or chunk)
        check_fits(calls * decoder_bytes_per_frame(cfg), f"one decoder call of {option('chunk')} {calls} frames at {cfg.res}^2",
                   f"use {option('chunk')} {max_chunk(cfg)} or less (frames are decoded chunk by chunk)")

    def default_refine_steps(self, res: int | None = None) -> int:
        """The refinement steps `encode` runs when not told: the model's own (config.refine_steps), or 0
        on backends without autograd (ONNX Runtime, TensorRT, AOTInductor), which can only run the encoder."""
        m = self.model(res)
        return m.config.refine_steps if m.backend.can_refine else 0

    def encode(self, video: np.ndarray, res: int | None = None, refine_steps: int | None = None) -> np.ndarray:
        """Tokens of uint8 videos [n, T, H, W, 3] (T = the model's clip length, H = W = res) -> float32
        (n, N, d_z): the encoder's posterior means, then `refine_steps` Adam steps on each video's tokens
        against the decoder (semi-amortized encoding, torch backends; None = default_refine_steps). `res` defaults
        to the resolution the videos have."""
        video = np.asarray(video)
        if video.ndim == 4:
            video = video[None]
        if res is None and video.ndim == 5 and video.shape[2] in self.models:
            res = video.shape[2]
        refine_steps = self.default_refine_steps(res) if refine_steps is None else refine_steps
        check_ints(refine_steps=refine_steps)
        if refine_steps < 0:
            raise NervError(f"{option('refine_steps')} must be >= 0, got {refine_steps}")
        m = self.model(res)
        cfg = m.config
        expected = (cfg.frames, cfg.res, cfg.res, 3)
        if video.dtype != np.uint8 or video.ndim != 5 or video.shape[1:] != expected or len(video) == 0:
            raise NervError(f"encode expects uint8 videos [n >= 1, {cfg.frames}, {cfg.res}, {cfg.res}, 3], got "
                            f"{video.dtype} {video.shape}")
        x = (video.astype(np.float32) / 127.5 - 1.0).transpose(0, 1, 4, 2, 3)  # (n, T, 3, H, W)
        with self._lock:  # loading the encoder is device work too (a TensorRT engine and its buffer)
            encoder = m.engine("encoder")
            tokens = np.stack([m.backend.numpy(encoder(video=m.backend.asarray(v[None]))["mean"])[0].copy() for v in x])
            if refine_steps:
                tokens = m.backend.numpy(m.backend.refine_tokens(m.backend.asarray(tokens), m.backend.asarray(x),
                                                                 refine_steps))
        return tokens

    @staticmethod
    def class_index(label: int | str | None, cfg: ModelConfig) -> int | None:
        """A class given by index or by name (the training set's folder names) -> index."""
        if label is None:
            return None
        if not isinstance(label, str):
            check_ints(class_label=label)
        if isinstance(label, str) and not re.fullmatch(r"-?[0-9]+", label):  # "3" is an index, as on the command line
            if label not in cfg.class_names:
                names = ", ".join(cfg.class_names) or "none recorded"
                raise NervError(f"{option('class_label')} {label!r} is not a class of this model (names: {names})")
            return cfg.class_names.index(label)
        if not 0 <= int(label) < cfg.num_classes:
            raise NervError(f"{option('class_label')} must be in 0..{cfg.num_classes - 1}, got {label}")
        return int(label)

    def synchronize(self) -> None:
        for m in self.models.values():
            m.backend.synchronize()
