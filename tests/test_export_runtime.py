"""Export round trips, ORT vs torch parity, the Pipeline API on both CPU backends, the torch-free path."""
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

import nerv_rt
from nerv_rt import checkpoint as ckpt_io
from nerv_rt.errors import CheckpointError, NervError
from nerv_rt.export.onnx_export import export
from nerv_rt.export.specs import graph_specs
from nerv_rt.runtime.pipeline import Pipeline
from nerv_rt.runtime.video_io import save_video
from tests.conftest import random_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_export_writes_validated_graphs_and_manifest(tiny_export, tiny_ckpt):
    manifest = json.loads((tiny_export / "manifest.json").read_text())
    assert sorted(p.name for p in tiny_export.iterdir()) == ["decoder.onnx", "dit.onnx", "encoder.onnx", "manifest.json"]
    assert manifest["format"] == "nerv-rt/export" and manifest["opset"] == 18
    assert manifest["checkpoint"]["sha256"] and set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime"}
    specs = graph_specs(ckpt_io.load(tiny_ckpt).config)
    for name, g in manifest["graphs"].items():
        model = onnx.load(str(tiny_export / g["file"]))
        dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
        assert dims == [list(t.shape) for t in specs[name].inputs]  # symbolic dims survive export
        assert g["inputs"] == [t.to_dict() for t in specs[name].inputs]
        assert g["validation"]["trt_unsupported_ops"] == []
        assert not any(n.metadata_props for n in model.graph.node)  # no stack traces with this machine's paths
    assert manifest["graphs"]["decoder"]["validation"]["psnr_db"] >= 45
    assert 0 < manifest["graphs"]["dit"]["validation"]["max_abs_err"] < 1e-4
    assert manifest["graphs"]["encoder"]["validation"]["max_abs_err"] < 1e-4


def test_export_256_and_multi_resolution_folder(tmp_path):
    for res in (128, 256):
        ckpt_io.save_pretrained(random_checkpoint(res), tmp_path / "set" / f"tiny-{res}")
    out = export(tmp_path / "set", tmp_path / "engines" / "set")
    assert sorted(p.name for p in out.iterdir()) == ["128", "256"]
    pipe = Pipeline.load(out, backend="onnxruntime")
    assert pipe.resolutions == [128, 256]
    video = pipe.generate(frames=3, res=256, steps=2)
    assert video.shape == (1, 3, 256, 256, 3) and video.dtype == np.uint8


def test_export_is_atomic_on_failure(tmp_path, monkeypatch):
    ckpt_io.save(random_checkpoint(), tmp_path / "m.pt")
    import nerv_rt.export.onnx_export as ex

    def bad_validate(*a, **k):
        raise NervError("injected failure")

    monkeypatch.setattr(ex, "_validate", bad_validate)
    with pytest.raises(NervError, match="injected"):
        export(tmp_path / "m.pt", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no out/, no temp folder


def test_export_replaces_only_an_earlier_export(tmp_path):
    ckpt_io.save(random_checkpoint(), tmp_path / "m.pt")
    export(tmp_path / "m.pt", tmp_path / "out", graphs_wanted=("dit",))
    export(tmp_path / "m.pt", tmp_path / "out", graphs_wanted=("dit",))  # re-exporting replaces it
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    ckpt_io.save_pretrained(random_checkpoint(), tmp_path / "weights")
    shutil.copytree(tmp_path / "out", tmp_path / "site")
    (tmp_path / "site" / "index.html").write_text("a manifest.json is no proof of an export")
    for name in ("a", "b"):  # two exports in one folder: `--out engines` for `--out engines/c` must not take both
        shutil.copytree(tmp_path / "out", tmp_path / "engines" / name)
    for taken in ("mine", "weights", "m.pt", "site", "engines"):  # a user's files, a checkpoint, a file, ...
        with pytest.raises(NervError, match="exists and is not"):
            export(tmp_path / "m.pt", tmp_path / taken, graphs_wanted=("dit",))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and (tmp_path / "weights" / "config.json").is_file()


def test_same_seed_same_video_on_both_cpu_backends(tiny_ckpt, tiny_export):
    kw = dict(frames=5, steps=4, n=2, seed=7, guidance=3.0)
    a = Pipeline.load(tiny_ckpt, backend="torch").generate(**kw)
    b = Pipeline.load(tiny_ckpt, backend="torch").generate(**kw)
    c = Pipeline.load(tiny_export, backend="onnxruntime").generate(**kw)
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 2  # float tolerance, after rounding to uint8
    d = Pipeline.load(tiny_export, backend="onnxruntime").generate(**{**kw, "seed": 8})
    assert np.abs(c.astype(int) - d.astype(int)).mean() > 1


def test_tokens_match_across_backends_and_samplers(tiny_ckpt, tiny_export):
    torch_pipe, ort_pipe = Pipeline.load(tiny_ckpt, backend="torch"), Pipeline.load(tiny_export, backend="onnxruntime")
    for sampler in ("ddim", "ddpm"):
        a = torch_pipe.sample_tokens(steps=6, sampler=sampler, seed=1, n=2).numpy()
        b = ort_pipe.sample_tokens(steps=6, sampler=sampler, seed=1, n=2)
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_chunked_decode_equals_one_call(tiny_export):
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    tokens = pipe.sample_tokens(steps=2, seed=0)
    whole = pipe.decode(tokens, frames=10, chunk=10)
    chunked = pipe.decode(tokens, frames=10, chunk=3)
    # ONNX Runtime may pick a different conv kernel per batch size: allow one level of rounding.
    assert np.abs(whole.astype(int) - chunked.astype(int)).max() <= 1


def test_decode_takes_nested_lists_and_refuses_other_shapes(tiny_export):
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    tokens = pipe.sample_tokens(steps=2, seed=0)
    assert np.array_equal(pipe.decode(tokens.tolist(), frames=3), pipe.decode(tokens, frames=3))
    with pytest.raises(NervError, match="shape \\(32, 16\\)"):
        pipe.decode(tokens[0], frames=3)
    with pytest.raises(NervError, match="array \\(n, N, d_z\\) of numbers"):
        list(pipe.iter_frames([[[0.0, 1.0], [2.0]]], frames=3))


def test_render_streams_frames_into_the_file(tiny_export, tmp_path):
    import tracemalloc

    import av

    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    tokens = pipe.sample_tokens(steps=2, seed=0)
    peaks = {}
    for frames in (16, 256):
        tracemalloc.start()
        pipe.render(tokens, tmp_path / f"f{frames}.mp4", frames=frames, chunk=16)
        peaks[frames] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    # numpy's buffers are traced: holding 256 frames would add 240 x 49 KB = 11.8 MB of uint8 alone
    assert peaks[256] - peaks[16] < 2 * 2**20, peaks
    with av.open(str(tmp_path / "f256.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 256
    save_video(pipe.decode(tokens, frames=16), tmp_path / "ref.mp4")  # the array path, same encoder

    def frames_of(name):
        with av.open(str(tmp_path / name)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)

    assert np.abs(frames_of("f16.mp4") - frames_of("ref.mp4")).mean() < 0.5


def test_fractional_frame_times_and_encode(tiny_export):
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    tokens = pipe.sample_tokens(steps=2, seed=0)
    video = pipe.decode(tokens, frame_t=np.array([0.0, 0.5, 1.25]))
    assert video.shape == (1, 3, 128, 128, 3)
    clip = pipe.decode(tokens, frames=16)
    assert pipe.encode(clip).shape == (1, 32, 16)
    for bad in (clip[:, :5], clip / 255.0, clip[:0]):  # too few frames, floats, no video
        with pytest.raises(NervError, match="encode expects uint8 videos"):
            pipe.encode(bad)


def test_pipeline_input_errors(tiny_export, tiny_ckpt, monkeypatch):
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    # the Python API names its parameters (the command line its flags: tests/test_cli.py), in nerv_rt.NervError
    assert nerv_rt.NervError is NervError
    for kwargs, msg in [({"frames": 0}, "^frames must"), ({"frames": 5000}, "^frames"), ({"res": 64}, "^res 64 is not"),
                        ({"sampler": "euler"}, "unknown sampler"), ({"steps": 0}, "^steps"), ({"n": 0}, "^n must"),
                        ({"class_label": 99}, "^class_label must be in"),
                        ({"class_label": 2.7}, "^class_label must be a whole number"),
                        ({"frames": 16.0}, "^frames must be a whole number"), ({"seed": 1.5}, "^seed must be")]:
        with pytest.raises(NervError, match=msg):
            pipe.generate(**kwargs)
    with pytest.raises(NervError, match="unknown backend"):
        Pipeline.load(tiny_export, backend="tvm")
    with pytest.raises(NervError, match="holds exported graphs only"):
        Pipeline.load(tiny_export, backend="torch")
    with pytest.raises(NervError, match="^precision='bf16' on onnxruntime needs device='cuda'.* with backend='torch'$"):
        Pipeline.load(tiny_export, backend="onnxruntime", device="cpu", precision="bf16").model().engine("dit")
    with pytest.raises(NervError, match="needs autograd, .* with backend='torch', or refine_steps=0$"):
        pipe.encode(pipe.decode(pipe.sample_tokens(steps=1), frames=16), refine_steps=2)
    with pytest.raises(NervError, match="^cuda_graph=True needs the CUDA execution provider \\(device='cuda'\\)$"):
        Pipeline.load(tiny_export, backend="onnxruntime", device="cpu", cuda_graph=True).model().engine("dit")
    with pytest.raises(NervError, match="^cuda_graph=True is for CUDA graphs on a GPU"):  # ignored before
        Pipeline.load(tiny_ckpt, backend="torch", cuda_graph=True)
    for guidance in (float("nan"), float("inf"), -1.0):
        with pytest.raises(NervError, match="^guidance must be a number"):
            pipe.generate(guidance=guidance)
    monkeypatch.setattr("nerv_rt.runtime.memory.available_bytes", lambda: 2**30)  # a machine with 1 GB free
    tokens = pipe.sample_tokens(steps=1)
    with pytest.raises(NervError, match="chunk 1000 frames at 128\\^2 needs about 5.4 GB of memory, 0.5 GB is .* use chunk 92 or less"):
        pipe.decode(tokens, frames=1000, chunk=1000)
    assert pipe.decode(tokens, frames=1000, chunk=16).shape == (1, 1000, 128, 128, 3)  # the same frames, in chunks
    with pytest.raises(NervError, match="an array of 100000 x 16 frames"):
        pipe.generate(n=100000, steps=1)


def test_wrong_types_and_values_are_one_error_naming_the_argument(tiny_export, tmp_path):
    """What a program might pass by mistake: one NervError naming the argument, not a TypeError from pathlib or
    numpy, and no black video decoded from NaN tokens."""
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    tokens = pipe.sample_tokens(steps=1)
    for call, msg in [
        (lambda: pipe.decode(np.full(tokens.shape, np.nan, np.float32)), "^tokens must be finite numbers"),
        (lambda: pipe.decode(np.full(tokens.shape, "a")), "^tokens must be .* of real numbers, got dtype <U1$"),
        (lambda: pipe.decode(np.zeros(tokens.shape, complex)), "of real numbers, got dtype complex128$"),
        (lambda: pipe.sample([(0, 0)]), r"^videos must hold VideoDraw\(seed, index, label\), got \(0, 0\)$"),
        (lambda: pipe.sample(nerv_rt.VideoDraw(0)), r"^videos must be a list of VideoDraw; for one video pass"),
        (lambda: pipe.sample([]), "^videos is empty"),
        (lambda: pipe.generate(res="128"), "^res must be a whole number, got '128'$"),
        (lambda: pipe.generate(res=128.0), "^res must be a whole number, got 128.0$"),
        (lambda: pipe.generate(steps=1, progress=5), "^progress must be a function or None, got 5$"),
        (lambda: Pipeline.load(None), r"^source must be a path \(str or pathlib.Path\), got None$"),
        (lambda: Pipeline.load(tiny_export, cuda_graph="yes"), "^cuda_graph must be None, True or False, got 'yes'$"),
        (lambda: pipe.render(tokens, None), "^path must be a path"),
        (lambda: pipe.render(tokens, [None]), r"^path\[0\] must be a path"),
        (lambda: nerv_rt.save_video(np.zeros((2, 8, 8, 3), np.uint8), None), "^path must be a path"),
        (lambda: nerv_rt.read_video(None), "^path must be a path")]:
        with pytest.raises(NervError, match=msg):
            call()
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")  # a wrong file: named as such, with or without torch installed
    with pytest.raises(NervError, match="clip.gif: not a nerv-rt checkpoint \\(a torch .pt file\\), an export folder"):
        Pipeline.load(tmp_path / "clip.gif")
    folder = pipe.render(tokens, tmp_path / "frames", frames=None)[0]  # frames as decode's: 16 when not given
    assert len(list(folder.glob("*.png"))) == 16


def test_a_pickled_pipeline_reopens_its_source_from_another_folder(tiny_export, tmp_path, monkeypatch):
    import copy
    import pickle

    from nerv_rt.runtime.sources import resolve

    monkeypatch.chdir(tiny_export.parent)
    pipe = Pipeline.load(tiny_export.name, backend="onnxruntime")  # a relative path
    tokens = pipe.sample_tokens(steps=2, seed=3)
    data = pickle.dumps(pipe)
    monkeypatch.chdir(tmp_path)
    copied = pickle.loads(data)
    assert copied.describe() == pipe.describe() and copied is not pipe
    np.testing.assert_array_equal(copied.sample_tokens(steps=2, seed=3), tokens)
    assert copy.deepcopy(pipe).describe() == pipe.describe()
    by_hand = Pipeline.from_backend(resolve(tiny_export)[0], pipe.model().backend)
    with pytest.raises(TypeError, match="made with Pipeline.from_backend cannot be pickled"):
        pickle.dumps(by_hand)


def test_video_i_of_a_seed_is_the_same_at_any_n_and_batch(tiny_export):
    """Every video draws its noise from its own (seed, index) stream: sampling 3 videos, or only the third
    (first=2), or with runs of one video, gives the same third video; a server batching requests relies on it."""
    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    three = pipe.sample_tokens(n=3, steps=3, seed=5, class_label=1)
    alone = pipe.sample_tokens(n=1, steps=3, seed=5, class_label=1, first=2)
    np.testing.assert_allclose(three[2:], alone, atol=1e-5)
    pipe.model().backend.max_batch = 1  # runs of one video each
    np.testing.assert_allclose(pipe.sample_tokens(n=3, steps=3, seed=5, class_label=1), three, atol=1e-5)
    assert not np.allclose(three[0], three[1])


class _InFlight:
    """An engine that records how many calls to it overlap (each lasts at least 2 ms)."""

    def __init__(self, engine):
        self.engine, self.now, self.most, self.count = engine, 0, 0, threading.Lock()

    def __call__(self, **inputs):
        with self.count:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.002)
        try:
            return self.engine(**inputs)
        finally:
            with self.count:
                self.now -= 1

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_one_pipeline_shared_by_threads_gives_each_call_its_video(tiny_export):
    """The engines reuse their buffers from call to call: calls from several threads take turns on one pipeline,
    and each gets the video it asked for."""
    from concurrent.futures import ThreadPoolExecutor

    from nerv_rt.engines import open_backend
    from nerv_rt.runtime.sources import resolve

    (source,) = resolve(tiny_export)
    backend, engines = open_backend("onnxruntime", source), {}
    open_engine = backend.engine
    backend.engine = lambda graph: engines.setdefault(graph, _InFlight(open_engine(graph)))
    pipe = Pipeline.from_backend(source, backend)
    want = {seed: pipe.generate(frames=4, steps=4, seed=seed) for seed in range(8)}
    with ThreadPoolExecutor(4) as pool:
        got = dict(zip(range(8), pool.map(lambda seed: pipe.generate(frames=4, steps=4, seed=seed), range(8))))
        tokens = pipe.sample_tokens(n=2, steps=2)
        chunks = list(pool.map(lambda _: list(pipe.iter_frames(tokens, frames=8, chunk=2)), range(3)))
    assert all(np.array_equal(got[s], want[s]) for s in want)
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(chunks[0], chunks[1]))
    assert engines["dit"].most == 1 and engines["decoder"].most == 1  # never two runs of one engine at once


def test_decode_finds_the_resolution_from_the_tokens(tmp_path):
    for res in (128, 256):
        ckpt_io.save_pretrained(random_checkpoint(res), tmp_path / "set" / f"tiny-{res}")
    pipe = Pipeline.load(tmp_path / "set", backend="torch")
    tokens = pipe.sample_tokens(res=256, steps=1)  # 40 tokens: only the 256^2 model takes them
    assert pipe.decode(tokens, frames=2).shape == (1, 2, 256, 256, 3)
    with pytest.raises(NervError, match="do not fit the 128\\^2 model"):
        pipe.decode(tokens, frames=2, res=128)
    with pytest.raises(NervError, match="fit no resolution"):
        pipe.decode(np.zeros((1, 7, 16), np.float32), frames=2)
    clip = pipe.decode(tokens, frames=16)  # 256^2
    assert pipe.encode(clip, refine_steps=0).shape == (1, 40, 16)  # encode finds it too


def test_pipeline_refuses_wrong_types_before_any_work(tiny_export, tmp_path):
    from nerv_rt.runtime.pipeline import default_fps
    from nerv_rt.runtime.sampling import VideoDraw

    pipe = Pipeline.load(tiny_export, backend="onnxruntime")
    steps_run = []
    progress = lambda done, total: steps_run.append(done)  # noqa: E731
    for kwargs, msg in [({"guidance": "2"}, "^guidance must be a number, got '2'"), ({"eta": None}, "^eta must be a number"),
                        ({"n": None}, "^n must be a whole number"), ({"chunk": 0}, "^chunk must be at least 1"),
                        ({"chunk": 1.5}, "^chunk must be a whole number"), ({"class_label": "--3"}, "is not a class")]:
        with pytest.raises(NervError, match=msg):
            pipe.generate(frames=2, steps=2, progress=progress, **kwargs)
    assert steps_run == []  # refused before sampling
    with pytest.raises(NervError, match="^first must be >= 0"):
        pipe.sample_tokens(first=-1)
    with pytest.raises(NervError, match=r"^class_label 'pan_left' is not a class of this model \(names: none recorded\)"):
        pipe.sample([VideoDraw(0, 0, "pan_left")])
    assert np.array_equal(pipe.sample([VideoDraw(0, 0, "3")], steps=2), pipe.sample([VideoDraw(0, 0, 3)], steps=2))
    default = Pipeline.load("default", backend="onnxruntime")  # a class by name, as generate(class_label=) takes it
    assert np.array_equal(default.sample([VideoDraw(0, 1, "zoom_in")], steps=2),
                          default.sample_tokens(n=1, first=1, class_label="zoom_in", steps=2))
    with pytest.raises(NervError, match="index must be >= 0"):
        pipe.sample([VideoDraw(0, -1)])
    with pytest.raises(NervError, match="^seed must be in"):
        pipe.sample([VideoDraw(-1), VideoDraw(5)])
    from fractions import Fraction

    a = pipe.sample_tokens(steps=2, guidance=Fraction(3, 2), eta=np.float32(0.5), sampler="ddim")
    assert np.array_equal(a, pipe.sample_tokens(steps=2, guidance=1.5, eta=0.5, sampler="ddim"))  # rationals work
    tokens = pipe.sample_tokens(n=2, steps=2)
    with pytest.raises(NervError, match="^frame_t must be numbers"):
        pipe.decode(tokens, frame_t=["a"])
    with pytest.raises(NervError, match=r"^frame_t must hold 1..4096 frame times, got 0$"):  # not "frames must be"
        pipe.decode(tokens, frame_t=[])
    with pytest.raises(NervError, match="^give frames or frame_t, not both"):  # frames was ignored
        pipe.decode(tokens, frames=2, frame_t=[0.0])
    assert pipe.decode(tokens[:1]).shape[1] == 16  # neither: a training clip's 16
    with pytest.raises(NervError, match="^refine_steps must be a whole number"):
        pipe.encode(pipe.decode(tokens[:1], frames=16), refine_steps="3")
    with pytest.raises(NervError, match="output paths repeat"):
        pipe.render(tokens, [tmp_path / "same.mp4", tmp_path / "same.mp4"])
    assert list(tmp_path.iterdir()) == []
    assert default_fps(pipe.model().config, 4096) == 1000  # 8 x 4096 / 16 would be past what a video may declare
    with pytest.raises(NervError, match="no fp16 dit graph"):  # at load, not at the first call
        Pipeline.load(tiny_export, backend="onnxruntime", precision="fp16")


def test_edited_onnx_is_refused(tmp_path, tiny_export):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(tiny_export, copy)
    with open(copy / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    pipe = Pipeline.load(copy, backend="onnxruntime")
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        pipe.generate(frames=2, steps=1)


def test_onnxruntime_path_never_imports_torch(tiny_export):
    code = f"""
import sys
import threading
import time
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
import nerv_rt
pipe = nerv_rt.Pipeline.load({str(tiny_export)!r})
video = pipe.generate(frames=3, steps=2, seed=0)
assert pipe.backend_name == "onnxruntime", pipe.backend_name
assert video.shape == (1, 3, 128, 128, 3)
nerv_rt.save_video(video[0], {str(tiny_export.parent / "torchfree.gif")!r})
assert "torch" not in sys.modules
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
