"""Video files in and out: .mp4 (H.264 via PyAV), .gif (imageio) or a folder of .png frames.

Writes are atomic: a temporary file or folder beside the target, renamed when complete.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import NervError, option, warn
from ..formats import FolderOutput, atomic_path, check_replaceable, named_path
from .args import check_ints, check_numbers, check_paths

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def list_videos(root: str | Path) -> list[Path]:
    """Every video file under `root` (linked folders followed, once each), sorted; a clear error when there are none."""
    root = Path(root)
    if root.is_file():
        raise NervError(f"{root} is a file; give a folder of videos (one sub-folder per class)")
    if not root.is_dir():
        raise NervError(f"{root}: data folder does not exist")
    paths, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):  # a split made of linked class folders
        if os.path.realpath(folder) in seen:  # a link back up the tree
            subfolders.clear()
            continue
        seen.add(os.path.realpath(folder))
        paths += [Path(folder) / f for f in files if Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    broken = [p for p in paths if p.is_symlink() and not p.exists()]
    if broken:
        raise NervError(f"{broken[0]}: a link to a file that does not exist ({len(broken)} in {root}); remove or "
                        "mend it")
    paths = sorted(p for p in paths if p.is_file())
    if not paths:
        raise NervError(f"{root}: no videos found (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return paths


FORMATS = {".mp4": "H.264 video", ".gif": "animated GIF", "": "folder of PNG frames"}


def _frame_name(k: int) -> str:
    return f"frame_{k:05d}.png"


def _holds_frames(folder: Path) -> bool:
    """Exactly what write_frames writes: frame_00000.png, frame_00001.png, ... (other tools number from 1)."""
    entries = list(folder.iterdir())
    return (all(e.is_file() and not e.is_symlink() for e in entries)
            and {e.name for e in entries} == {_frame_name(k) for k in range(len(entries))})


PNG_FRAMES = FolderOutput("a folder of frame_00000.png ... written by nerv-rt", _holds_frames)
_CRF = {"high": "12", "normal": "18"}
MIN_FPS, MAX_FPS = 0.01, 1000  # below MIN_FPS the .mp4 time base (a fraction over at most 1001) rounds the rate to 0
GIF_MAX_FPS = 50  # a GIF frame lasts a whole number of centiseconds, and browsers play a delay under 2 as 10


def check_fps(fps: float) -> None:
    check_numbers(fps=fps)
    if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise NervError(f"{option('fps')} must be a number in {MIN_FPS:g}..{MAX_FPS}, got {fps}")


def check_quality(quality: str) -> None:
    if quality not in _CRF:
        raise NervError(f"quality must be one of {', '.join(_CRF)}, got {quality!r}")


def gif_delay_cs(fps: float) -> int:
    """A GIF frame's delay at `fps`: whole centiseconds, at least 2 (GIF_MAX_FPS)."""
    return max(2, round(100 / float(fps)))


def played_fps(path: str | Path, fps: float) -> float:
    """The rate a video written to `path` at `fps` plays at: a .gif's is rounded to whole-centisecond delays."""
    return 100 / gif_delay_cs(fps) if Path(path).suffix.lower() == ".gif" else float(fps)


def output_paths(path: str | Path, n: int) -> list[Path]:
    """Where `n` videos go: the path itself for one, `<stem>-<i><ext>` for several."""
    path = named_path(path)
    if n == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i}{path.suffix}") for i in range(n)]


def check_output_path(path: str | Path, n: int = 1) -> None:
    """Fail early, before any work, on an unknown extension, a missing / read-only folder, or an output (of `n`
    videos: output_paths) that would replace what is not an earlier output of its kind (check_replaceable)."""
    path = named_path(path)
    if path.suffix.lower() not in FORMATS:
        kinds = ", ".join(f"{k or '<folder>'} ({v})" for k, v in FORMATS.items())
        raise NervError(f"{path}: unknown output extension {path.suffix!r}; use one of {kinds}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NervError(f"{path}: folder {parent} does not exist")
    try:  # a real probe: permission bits do not bind root, read-only mounts do
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".nerv-rt-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise NervError(f"{path}: folder {parent} is not writable ({e.strerror})") from None
    for p in output_paths(path, n):
        check_replaceable(p, PNG_FRAMES if p.suffix == "" else None)


def save_video(video: np.ndarray, path: str | Path, fps: float = 8, quality: str = "normal") -> list[Path]:
    """Write uint8 frames [F, H, W, 3] (or a batch [n, F, H, W, 3]) to `path`; returns the paths written.

    The extension picks the format: .mp4 (H.264, yuv420p), .gif, or no extension for a folder of
    frame_00000.png ... files. Several videos are written as <stem>-0<ext>, <stem>-1<ext>, ...
    """
    check_paths(path=path)
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3 or 0 in video.shape:
        raise NervError(f"save_video expects uint8 [F, H, W, 3] or [n, F, H, W, 3] with at least one frame, got "
                        f"{video.dtype} {video.shape}")
    batch = video if video.ndim == 5 else video[None]
    check_output_path(path, len(batch))
    check_fps(fps)
    paths = output_paths(path, len(batch))
    for clip, p in zip(batch, paths):
        write_frames([clip], p, fps, quality)
    return paths


def write_frames(chunks: Iterable[np.ndarray], path: Path, fps: float = 8, quality: str = "normal") -> None:
    """Write one video from uint8 frame chunks [c, H, W, 3] as they come, atomically: .mp4 and PNG
    folders hold one chunk at a time; a .gif is assembled in memory (GIF writers need every frame) and plays at
    most GIF_MAX_FPS (a warning says so)."""
    path = Path(path)
    suffix = path.suffix.lower()
    check_quality(quality)  # before anything is written (save_video's checks stop at its first clip's)
    played = played_fps(path, fps)
    if abs(played - fps) > 0.05 * fps:
        warn(f"{path}: a .gif frame lasts whole centiseconds and plays at most {GIF_MAX_FPS} fps, so this one "
             f"plays at {played:.3g} fps instead of {float(fps):g}; write .mp4 for the exact rate")
    with atomic_path(path, folder=PNG_FRAMES if suffix == "" else None) as tmp:
        if suffix == ".mp4":
            _write_mp4(chunks, tmp, fps, quality, path)
            return
        import imageio.v3 as iio

        if suffix == ".gif":
            iio.imwrite(tmp, np.concatenate(list(chunks)), extension=".gif", duration=10 * gif_delay_cs(fps), loop=0)
            return
        frames = (frame for chunk in chunks for frame in chunk)
        for k, frame in enumerate(frames):
            iio.imwrite(tmp / _frame_name(k), frame)


def _write_mp4(chunks: Iterable[np.ndarray], tmp: Path, fps: float, quality: str, path: Path) -> None:
    """Encode into `tmp`; errors name `path`, the file the user asked for."""
    import av

    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for chunk in chunks:
            if stream is None:  # the frame size is known once the first chunk arrives
                H, W = chunk.shape[1:3]
                if H % 2 or W % 2:
                    raise NervError(f"{path}: H.264 needs even frame sizes, got {W}x{H}")
                rate = fps if isinstance(fps, Fraction) else Fraction(float(fps))  # numpy floats: no Fraction()
                stream = container.add_stream("libx264", rate=rate.limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
                stream.options = {"crf": _CRF[quality], "preset": "medium"}
            for frame in chunk:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        if stream is not None:
            container.mux(stream.encode())


def read_video(path: str | Path, start: int = 0, count: int | None = None, size: int | None = None) -> np.ndarray:
    """Decode frames [start, start+count) of a video file as uint8 [F, H, W, 3]: fewer where the file ends first, as a
    slice does (a start past its end is an error naming the file's length).

    With `size`, each frame is resized so its shorter side is `size`, then centre-cropped to size x size.
    """
    import av

    check_paths(path=path)
    check_ints(start=start, **({} if count is None else {"count": count}), **({} if size is None else {"size": size}))
    if start < 0 or (count is not None and count < 1) or (size is not None and size < 1):
        raise NervError(f"read_video needs start >= 0, count >= 1 (or None: all) and size >= 1 (or None), got start "
                        f"{start}, count {count}, size {size}")

    frames, seen = [], 0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(_video_stream(container, path)):
                seen += 1
                if seen <= start:
                    continue
                if count is not None and len(frames) == count:
                    break
                frames.append(frame.to_ndarray(format="rgb24") if size is None else _resize_crop(frame, size))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise NervError(f"{path}: cannot decode video ({e})") from None
    if not frames:
        raise NervError(f"{path}: no video frames decoded" +
                        (f" from frame {start}: it has {seen}" if seen else ""))
    return np.stack(frames)


def _video_stream(container, path: str | Path):
    """The file's first video stream; a file of audio (or nothing) alone is an error naming it."""
    if not container.streams.video:
        raise NervError(f"{path}: no video stream in the file")
    return container.streams.video[0]


def _resize_crop(frame, size: int) -> np.ndarray:
    w, h = frame.width, frame.height
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = frame.reformat(width=nw, height=nh, format="rgb24", interpolation="AREA").to_ndarray()
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return img[y0:y0 + size, x0:x0 + size]


class VideoProbe(NamedTuple):
    frames: int
    fps: float | None  # None where the file declares no rate


def probe_video(path: str | Path) -> VideoProbe:
    """A video's frame count (from the container metadata when it has it, else by decoding) and the frame rate
    it declares (its stream's average rate), from one open."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate
            frames = int(stream.frames) if stream.frames else sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise NervError(f"{path}: cannot read video ({e})") from None
    return VideoProbe(frames, float(rate) if rate else None)
