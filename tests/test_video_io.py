"""save_video / read_video: formats, batches, atomicity, errors."""
import numpy as np
import pytest

from nerv_rt.errors import NervError
from nerv_rt.runtime.video_io import save_video


def _video(frames=6, size=64):
    """A smooth colour pattern drifting right one pixel per frame."""
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([(np.stack([0.5 + 0.4 * np.sin(6 * (x - k / size)), y, 1 - x * y], axis=-1) * 255).astype(np.uint8)
                     for k in range(frames)])


def test_mp4_round_trip(tmp_path):
    import nerv_rt

    v = _video()
    (path,) = nerv_rt.save_video(v, tmp_path / "a.mp4", fps=8, quality="high")
    back = nerv_rt.read_video(path)
    assert back.shape == v.shape
    mse = np.mean((back.astype(float) - v) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # H.264 is lossy, but not by much on smooth content


def test_gif_png_and_batches(tmp_path):
    v = _video()
    save_video(v, tmp_path / "a.gif")
    assert (tmp_path / "a.gif").stat().st_size > 0
    save_video(v, tmp_path / "frames")
    assert len(list((tmp_path / "frames").glob("frame_*.png"))) == 6
    paths = save_video(np.stack([v, v]), tmp_path / "b.mp4")
    assert [p.name for p in paths] == ["b-0.mp4", "b-1.mp4"]


def test_outputs_replace_only_earlier_outputs(tmp_path):
    """A file replaces a file and a frame folder an earlier frame folder; nothing replaces a user's other files."""
    v = _video()
    save_video(v, tmp_path / "a.mp4")
    save_video(v, tmp_path / "a.mp4")  # regenerating a clip overwrites it
    save_video(v, tmp_path / "frames")
    save_video(v[:3], tmp_path / "frames")
    assert len(list((tmp_path / "frames").iterdir())) == 3
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    (tmp_path / "ffmpeg").mkdir()
    (tmp_path / "ffmpeg" / "frame_00001.png").write_bytes(b"another tool's frame, numbered from 1")
    for taken in ("mine", "ffmpeg"):
        with pytest.raises(NervError, match="exists and is not empty or a folder of frame_00000.png"):
            save_video(v, tmp_path / taken)
    (tmp_path / "b.gif").mkdir()
    with pytest.raises(NervError, match="is a folder"):
        save_video(v, tmp_path / "b.gif")
    (tmp_path / "clip").write_bytes(b"not a folder")
    with pytest.raises(NervError, match="exists and is not a folder"):
        save_video(v, tmp_path / "clip")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert (tmp_path / "clip").read_bytes() == b"not a folder"
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temporary left


def test_errors_leave_nothing_behind(tmp_path):
    with pytest.raises(NervError, match="unknown output extension"):
        save_video(_video(), tmp_path / "a.webm")
    with pytest.raises(NervError, match="uint8"):
        save_video(_video().astype(np.float32), tmp_path / "a.mp4")
    with pytest.raises(NervError, match=f"^{tmp_path / 'odd.mp4'}: H.264 needs even frame sizes"):  # not the temporary
        save_video(_video(size=33), tmp_path / "odd.mp4")
    for kwargs, msg in [({"video": _video()[:0]}, "at least one frame"), ({"quality": "low"}, "quality must be one of"),
                        ({"fps": "8"}, "fps must be a number, got '8'"), ({"fps": None}, "fps must be a number"),
                        ({"fps": 1e-6}, "fps must be a number in 0.01..1000")]:
        with pytest.raises(NervError, match=msg):
            save_video(**{"video": _video(), "path": tmp_path / "a.mp4", **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_gif_frames_last_whole_centiseconds(tmp_path):
    from PIL import Image

    def delays(path):
        with Image.open(path) as im:
            return {im.seek(k) or im.info["duration"] for k in range(im.n_frames)}

    save_video(_video(), tmp_path / "a.gif", fps=8)
    assert delays(tmp_path / "a.gif") == {120}  # 12.5 cs, rounded: GIF counts whole centiseconds (8.3 fps, no warning)
    for fps in (64, 40):  # 1.6 cs is under the 2 browsers play; 2.5 cs rounds to 2: 50 fps either way
        with pytest.warns(UserWarning, match=f"plays at 50 fps instead of {fps}"):
            save_video(_video(), tmp_path / f"{fps}.gif", fps=fps)
        assert delays(tmp_path / f"{fps}.gif") == {20}
    save_video(_video(), tmp_path / "c.mp4", fps=np.float32(8))  # numpy rates are rates too


def test_read_video_refuses_bad_ranges(tmp_path):
    from nerv_rt.runtime.video_io import read_video

    (path,) = save_video(_video(), tmp_path / "a.mp4")
    assert read_video(path, start=2, count=3, size=32).shape == (3, 32, 32, 3)
    for kwargs in ({"start": -1}, {"count": 0}, {"count": 3.5}, {"size": 0}, {"start": 1.5}):
        with pytest.raises(NervError, match="read_video needs|must be a whole number"):
            read_video(path, **kwargs)
    n = len(read_video(path))
    assert len(read_video(path, start=n - 2, count=5)) == 2  # a slice: fewer where the file ends
    with pytest.raises(NervError, match=f"no video frames decoded from frame {n + 3}: it has {n}$"):
        read_video(path, start=n + 3)


def test_outputs_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp / mkdtemp (0600 / 0700); the results must not keep those modes."""
    import os

    from nerv_rt import checkpoint as ckpt_io
    from tests.conftest import random_checkpoint

    umask = os.umask(0o022)
    try:
        clip = _video(3)
        paths = [*save_video(clip, tmp_path / "a.mp4"), *save_video(clip, tmp_path / "a.gif")]
        ckpt_io.save(random_checkpoint(), tmp_path / "c.pt")
        ckpt_io.save_pretrained(random_checkpoint(), tmp_path / "pretrained")
        files = [*paths, tmp_path / "c.pt", *(tmp_path / "pretrained").iterdir()]
        folders = [*save_video(clip, tmp_path / "frames")]
    finally:
        os.umask(umask)
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {oct(0o644)}
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o755)}
