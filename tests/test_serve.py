"""`nerv-rt serve` on loopback, as a client sees it: real HTTP requests to the CLI's Ray Serve application with the
embedded default model on ONNX Runtime. Batching is observed (responses name their sampling run), a request gets
the video `nerv-rt generate` gives for its seed, bad requests get 4xx naming the field and the service keeps
serving, and a killed replica is replaced."""
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve")

from tests.test_cli import run

STARTUP_S = 240  # Ray and a replica on two busy cores


def _request(url: str, body: dict | bytes | None = None, timeout: float = 300) -> tuple[int, dict, bytes]:
    """(status, headers with lower-case names, body)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.fixture(scope="module")
def server():
    from nerv_rt.bench.serve_load import Server

    with Server(["--max-batch", "16", "--batch-wait-ms", "400"], startup_s=STARTUP_S) as running:
        yield running.url
    assert running.proc.returncode == 0, running.stderr[-2000:]  # SIGTERM took Serve and Ray down cleanly


def _frames(video: bytes, tmp: Path, suffix: str = ".mp4"):
    import av

    path = tmp / f"clip{suffix}"
    path.write_bytes(video)
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_models_and_health(server):
    status, _, body = _request(f"{server}/models")
    d = json.loads(body)
    assert status == 200 and d["resolutions"] == [128, 256] and "pan_left" in d["models"]["128"]["classes"]
    assert d["backend"].startswith("onnxruntime")


def test_generate_returns_the_clip_generate_writes(server, tmp_path):
    body = {"class": "pan_left", "seed": 5, "frames": 12, "steps": 10}
    status, headers, video = _request(f"{server}/generate", body)
    assert status == 200 and headers["content-type"] == "video/mp4", video[:200]
    assert headers["x-seed"] == "5" and headers["x-class"] == "pan_left" and float(headers["x-sample-ms"]) > 0
    served = _frames(video, tmp_path)
    assert served.shape == (12, 128, 128, 3)
    res = run("generate", "--class", "pan_left", "--seed", 5, "--frames", 12, "--steps", 10, "--out", tmp_path / "g.mp4")
    assert res.returncode == 0, res.stderr
    with __import__("av").open(str(tmp_path / "g.mp4")) as c:
        written = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert np.abs(served.astype(int) - written).max() <= 1  # same seed, same video
    status, headers, gif = _request(f"{server}/generate", {**body, "format": "gif", "res": 256, "frames": 3})
    assert status == 200 and headers["content-type"] == "image/gif" and gif[:4] == b"GIF8"


def test_concurrent_requests_share_sampling_runs(server):
    bodies = [{"seed": s, "frames": 4, "steps": 8} for s in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda b: _request(f"{server}/generate", b), bodies))
    assert all(status == 200 for status, _, _ in results), [r[2][:200] for r in results if r[0] != 200]
    runs = {h["x-run"] for _, h, _ in results}
    sizes = [int(h["x-batch-size"]) for _, h, _ in results]
    assert len(runs) < len(bodies) and max(sizes) > 1, (runs, sizes)  # batching observed, not assumed
    assert len({h["x-seed"] for _, h, _ in results}) == 16


@pytest.mark.parametrize("body,status,field", [
    (b"{not json", 400, None), (b"[1, 2]", 400, None), ({"colour": "red"}, 400, "colour"),
    ({"class": "spin"}, 422, "class"), ({"res": 512}, 422, "res"), ({"frames": 0}, 422, "frames"),
    ({"frames": 100000}, 422, "frames"), ({"steps": 5000}, 422, "steps"), ({"guidance": -1}, 422, "guidance"),
    ({"seed": "x"}, 422, "seed"), ({"format": "avi"}, 422, "format"), (b"{" + b" " * 5000 + b"}", 413, None),
    (b"[" * 2000 + b"]" * 2000, 400, None)])  # nested past Python's recursion limit
def test_bad_requests_get_4xx_and_the_service_stays_up(server, body, status, field):
    got, _, raw = _request(f"{server}/generate", body)
    assert got == status, raw
    assert json.loads(raw)["field"] == field
    assert _request(f"{server}/generate", {"frames": 2, "steps": 2})[0] == 200


def test_wrong_method_and_route(server):
    assert _request(f"{server}/generate")[0] == 405
    status, _, body = _request(f"{server}/nope")
    assert status == 404 and json.loads(body)["error"].startswith("no route")


def test_what_cannot_serve_is_one_error_line_before_serving(tmp_path):
    """A port in use is refused before Ray starts; replicas the machine cannot place, or that fail to load, are
    named (Ray itself would wait for the resources forever, or report "Failed to update the deployments")."""
    import socket

    from nerv_rt.errors import NervError
    from nerv_rt.serve.app import ServeOptions
    from nerv_rt.serve.run import _check_resources, _failure
    from tests.test_cli import assert_clean_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_clean_error(run("serve", "--port", port), f"cannot listen on 127.0.0.1:{port}")
    # scaled to zero, no replica loads at the start: the command loads the model once itself, before Ray starts
    assert_clean_error(run("serve", "--min-replicas", 0, "--max-replicas", 1, "--precision", "fp16"), "no fp16")
    assert_clean_error(run("serve", "--min-replicas", 0, "--max-replicas", 1, "--precision", "bf16"),
                       "--precision bf16 on onnxruntime needs --device cuda")  # the load's error names flags here too
    have = {"CPU": 2.0}
    _check_resources(ServeOptions(replicas=2), have)
    for options, need in ((ServeOptions(replicas=3), "3 replicas at --num-cpus 1 need 3 CPUs and this machine has 2"),
                          (ServeOptions(num_gpus=1, device="cuda"), "need 1 GPUs and this machine has 0"),
                          (ServeOptions(min_replicas=0, max_replicas=4, num_cpus=4), "1 replica at --num-cpus 4")):
        with pytest.raises(NervError, match=need):
            _check_resources(options, have)

    class Status:  # serve.status() after a replica's constructor raised
        deployments = {"Generator": type("D", (), {"message": "Traceback (most recent call last):\n  File ...\n"
                                                   "nerv_rt.errors.CheckpointError: x: the export has no fp16 dit graph"})}
    serve = type("Serve", (), {"status": staticmethod(lambda: type("S", (), {"applications": {"nerv-rt": Status}}))})
    assert _failure(serve, RuntimeError("Failed to update")) == "CheckpointError: x: the export has no fp16 dit graph"


def test_a_batch_drops_requests_whose_clients_left_and_stops_an_abandoned_run():
    """The replica's batch runner without Ray: a request cancelled before its run is left out of it (the others are
    served), and a run whose clients all leave while it samples stops there."""
    from dataclasses import asdict

    from nerv_rt.serve.app import Generator, ServeOptions, _Abandoned, _Clip, _Ticket
    from nerv_rt.serve.request import parse_request

    gen = Generator.func_or_class(asdict(ServeOptions(device="cpu")))
    ticket = lambda body, cancelled=False: _Ticket(parse_request(json.dumps(body).encode(), gen.configs), cancelled)  # noqa: E731
    served, gone, other = gen._run([ticket({"seed": 1, "steps": 4}), ticket({"seed": 2, "steps": 4}, True),
                                    ticket({"steps": 2})])
    assert gone is None and isinstance(other, _Clip) and served.headers["X-Batch-Size"] == "1"  # seed 2 left out
    left, sample, steps_run = ticket({"steps": 50}), gen.pipe.sample, []

    def sample_while_the_client_leaves(*args, progress, **kwargs):
        def step(i: int) -> None:
            steps_run.append(i)
            left.cancelled = i >= 2  # the client disconnects during step 2
            progress(i)
        return sample(*args, progress=step, **kwargs)

    gen.pipe.sample = sample_while_the_client_leaves
    assert isinstance(gen._run([left])[0], _Abandoned) and steps_run == [1, 2]  # stopped there, not at step 50


def test_serve_options_from_a_config_are_checked():
    from nerv_rt.errors import NervError
    from nerv_rt.serve.app import ServeOptions

    assert ServeOptions.from_args({"max_batch": "4", "min_replicas": "null"}).max_batch == 4
    for args, msg in (({"max_batch": "abc"}, "max_batch='abc': expected int"), ({"model": 3}, "expected a string"),
                      ({"max_batch": True}, "expected int"), ({"replicas": 2.9}, "expected int"),
                      ({"colour": "red"}, "unknown serve option")):
        with pytest.raises(NervError, match=msg):
            ServeOptions.from_args(args)


@pytest.mark.parametrize("label, index", [("x", 1), (2, 2), ("3", 3), ("-1", None), ("9", None), (9, None),
                                          (True, None), (2.0, None), ("w", None), ([1], None)])
def test_a_request_reads_its_class_as_generate_does(label, index):
    """A class named "3" is index 3 in a request as in `generate --class 3` and Pipeline.class_index."""
    from dataclasses import replace

    from nerv_rt.models.presets import preset
    from nerv_rt.runtime.pipeline import Pipeline
    from nerv_rt.serve.request import RequestError, parse_request

    cfg = replace(preset("tiny", 128), num_classes=4, class_names=("3", "x", "y", "z"))
    body = json.dumps({"class": label}).encode()
    if index is None:
        with pytest.raises(RequestError, match="unknown class") as refused:
            parse_request(body, {128: cfg})
        assert refused.value.status == 422
    else:
        assert parse_request(body, {128: cfg}).label == index == Pipeline.class_index(label, cfg)


def test_probes_chunked_bodies_and_class_indices(server):
    with urllib.request.urlopen(urllib.request.Request(f"{server}/healthz", method="HEAD"), timeout=60) as r:
        assert r.status == 200 and r.read() == b""  # a load balancer's HEAD probe
    chunks = iter((b"{" + b" " * 4096, b"}"))  # no Content-Length: the body is read only up to 4 KB + 1
    req = urllib.request.Request(f"{server}/generate", data=chunks, method="POST",
                                 headers={"Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=120)
    assert refused.value.code == 413 and json.loads(refused.value.read())["error"] == "request body over 4096 bytes"
    status, headers, _ = _request(f"{server}/generate", {"class": "3", "frames": 2, "steps": 2})
    assert status == 200 and headers["x-class"] == json.loads(_request(f"{server}/models")[2])["models"]["128"]["classes"][3]


def test_sigterm_lets_the_requests_in_flight_finish():
    """Stopping deletes the application before Serve: its replica answers the request it holds (seconds of work
    here), and the proxy passes the answer on; shutting Serve down first cut such clients off."""
    import threading

    from nerv_rt.bench.serve_load import Server, post

    answers = []
    with Server(["--max-batch", "1"], startup_s=STARTUP_S) as running:
        heavy = threading.Thread(target=lambda: answers.append(post(
            f"{running.url}", {"steps": 1000, "frames": 256, "res": 256}, timeout=300)))
        heavy.start()
        time.sleep(1.0)  # the request is in its sampling run
        running.proc.send_signal(signal.SIGTERM)
        heavy.join()
        running.proc.wait(timeout=300)
    assert answers and answers[0][0] == 200, answers
    assert "stopping: the requests in flight finish first" in running.stderr and running.proc.returncode == 0


def test_a_killed_replica_is_replaced(server):  # last: it kills the module's replica
    _, headers, _ = _request(f"{server}/generate", {"frames": 2, "steps": 2})
    pid = int(headers["x-run"].split(":")[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + STARTUP_S
    while time.time() < deadline:
        try:
            status, headers, _ = _request(f"{server}/generate", {"frames": 2, "steps": 2}, timeout=30)
            if status == 200:
                assert int(headers["x-run"].split(":")[0]) != pid
                return
        except OSError:
            pass
        time.sleep(2)
    pytest.fail("no replica came back")
