"""The Ray Serve application: one deployment, `Generator`, over the Python API.

    POST /generate   JSON request (serve/request.py) -> the clip (video/mp4 or image/gif); headers X-Seed,
                     X-Class, X-Sample-Ms, X-Decode-Ms, X-Batch-Size (videos in its sampling run), X-Run
    GET  /models     resolutions, classes, clip length and frame rate, backend
    GET  /healthz    {"status": "ok"}

Concurrent requests are batched with `@serve.batch`; those that share (res, steps, sampler, guidance) become
one sampling run of n videos (the DiT runs at batch 2n with CFG), each with its own seed's noise, so a request
gets the video `nerv-rt generate --seed S` gives. A batch runs in a worker thread: the replica keeps taking
requests (the next batch) meanwhile. Its requests return together: returning each as its clip was written split
the next batches (bench/results/cpu-xeon-2core-serve-early-return). A request whose client has gone is left out of
the runs not yet started, and a run whose clients have all gone stops at its next step. `build_app` is the
application builder `serve deploy` imports.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ON_COMMAND_LINE, NervError, option, setting
from ..runtime.pipeline import Pipeline, default_fps
from ..runtime.sampling import VideoDraw, video_label
from .request import FORMATS, MAX_BODY_BYTES, GenerateRequest, RequestError, encode_video, parse_request

APP_NAME = "nerv-rt"


@dataclass(frozen=True)
class ServeOptions:
    """What a replica loads and how requests are batched; also the `args` of a Serve config file."""
    model: str = "default"
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    max_batch: int = 8  # requests per batch (one sampling run per (res, steps, sampler, guidance) in it)
    batch_wait_ms: float = 50.0  # the longest a request waits for others to join its batch
    replicas: int = 1
    min_replicas: int | None = None  # with max_replicas: autoscaling between them
    max_replicas: int | None = None
    num_cpus: float = 1.0  # per replica
    num_gpus: float = 0.0  # per replica

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> ServeOptions:
        """From a Serve config's `args` (typed YAML) or `serve run ... key=value` (every value a string)."""
        unknown = sorted(set(args) - {f.name for f in fields(cls)})
        if unknown:
            raise NervError(f"unknown serve option(s) {unknown}; options: {', '.join(f.name for f in fields(cls))}")
        kinds = {"max_batch": int, "replicas": int, "min_replicas": int, "max_replicas": int, "batch_wait_ms": float,
                 "num_cpus": float, "num_gpus": float, "model": str, "backend": str, "device": str, "precision": str}
        cast = {}
        for k, v in args.items():
            kind = kinds[k]
            if v in (None, "null", "None") and k.endswith("_replicas"):
                cast[k] = None
                continue
            wanted = "a string" if kind is str else kind.__name__
            # refused, where a cast would take them: True as a number, 3 as a model, 2.9 replicas
            if isinstance(v, bool) or (kind is str and not isinstance(v, str)) or (
                    kind is int and isinstance(v, float) and not v.is_integer()):
                raise NervError(f"serve option {k}={v!r}: expected {wanted}")
            try:
                cast[k] = kind(v)
            except (TypeError, ValueError):
                raise NervError(f"serve option {k}={v!r}: expected {wanted}") from None
        return cls(**cast)

    def replica_device(self) -> str:
        """A replica without a GPU of its own runs on the CPU: Ray does not hide the GPUs from it."""
        return "cpu" if self.device == "auto" and self.num_gpus == 0 else self.device

    def check(self) -> None:
        if self.max_batch < 1 or not 0 <= self.batch_wait_ms <= 60_000 or self.replicas < 1:
            raise NervError(f"{option('max_batch')} and {option('replicas')} must be >= 1 and "
                            f"{option('batch_wait_ms')} in 0..60000")
        if (self.min_replicas is None) != (self.max_replicas is None) or (
                self.min_replicas is not None and not (0 <= self.min_replicas <= self.max_replicas and self.max_replicas >= 1)):
            raise NervError(f"autoscaling needs both {option('min_replicas')} and {option('max_replicas')}, "
                            "0 <= min <= max, max >= 1")
        if self.device == "cuda" and self.num_gpus == 0:
            raise NervError(f"{setting('device', 'cuda')} needs a GPU per replica that Ray reserves: "
                            f"{setting('num_gpus', 1)} (or a fraction)")


@dataclass
class _Clip:
    video: bytes
    headers: dict[str, str]


class _Abandoned(Exception):
    """Every client of a sampling run has gone: the run stops."""


@dataclass(eq=False)
class _Ticket:
    """A request in a batch; its handler marks it cancelled when the client disconnects (the batch runs in another
    thread and sees the mark between runs and sampling steps)."""
    request: GenerateRequest
    cancelled: bool = False


async def _read_body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY_BYTES + 1 (a chunked upload declares no length)."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise RequestError(413, None, f"request body over {MAX_BODY_BYTES} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestError(413, None, f"request body over {MAX_BODY_BYTES} bytes")
    return body


def open_pipeline(options: ServeOptions, on_command_line: bool) -> Pipeline:
    """The pipeline a replica serves, its graphs loaded: a replica that cannot serve fails here, not at its first
    request. Load errors name the command line's flags when it was `nerv-rt serve` that started the replicas."""
    token = ON_COMMAND_LINE.set(on_command_line)
    try:
        pipe = Pipeline.load(options.model, backend=options.backend, device=options.replica_device(),
                             precision=options.precision)
        for m in pipe.models.values():
            m.load_graphs()
        return pipe
    finally:
        ON_COMMAND_LINE.reset(token)


@serve.deployment
class Generator:
    def __init__(self, options: dict[str, Any], on_command_line: bool = False):
        self.options = ServeOptions(**options)
        self.pipe = open_pipeline(self.options, on_command_line)
        self.configs = {r: m.config for r, m in self.pipe.models.items()}
        self.generate.set_max_batch_size(self.options.max_batch)
        self.generate.set_batch_wait_timeout_s(self.options.batch_wait_ms / 1000)
        self.runs = itertools.count(1)
        self.name = f"{os.getpid()}"

    async def __call__(self, request: Request) -> Response:
        # the path below the application's route prefix (Serve passes the prefix as the ASGI root_path)
        path = request.scope["path"][len(request.scope.get("root_path", "")):].rstrip("/") or "/"
        routes = {"/healthz": "GET", "/models": "GET", "/generate": "POST"}
        try:
            if path not in routes:
                raise RequestError(404, None, f"no route {path}; POST /generate, GET /models, GET /healthz")
            allowed = ("GET", "HEAD") if routes[path] == "GET" else (routes[path],)
            if request.method not in allowed:
                return JSONResponse({"error": f"{path} takes {routes[path]}", "field": None}, status_code=405,
                                    headers={"Allow": ", ".join(allowed)})
            if request.method == "HEAD":  # a load balancer's probe: the status alone
                return Response(status_code=200)
            if path == "/healthz":
                return JSONResponse({"status": "ok"})
            if path == "/models":
                return JSONResponse(self.describe())
            req = parse_request(await _read_body(request), self.configs)
            ticket = _Ticket(req)
            try:
                clip = await self.generate(ticket)
            except asyncio.CancelledError:  # the client went away: the runs not yet started leave it out
                ticket.cancelled = True
                raise
            if isinstance(clip, Exception):  # its sampling run failed; the batch's other runs did not
                raise clip
            return Response(clip.video, media_type=FORMATS[req.format], headers=clip.headers)
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)
        except Exception as e:  # the request was valid: a failure here is the server's (JSON, not Serve's text 500)
            logging.getLogger("ray.serve").exception("%s %s failed", request.method, path)  # details stay in the log
            return JSONResponse({"error": f"{type(e).__name__}; the replica's log has the details",
                                 "field": None}, status_code=500)

    def describe(self) -> dict[str, Any]:
        return {"resolutions": sorted(self.configs), "backend": self.pipe.describe(),
                "models": {str(r): {"classes": list(c.class_names), "clip_frames": c.frames, "fps": c.fps,
                                    "tokens": c.tokens} for r, c in self.configs.items()},
                "batching": {"max_batch": self.options.max_batch, "batch_wait_ms": self.options.batch_wait_ms}}

    # Size and wait are set from the options in __init__. One batch at a time: the pipeline's engine runs take turns
    # anyway (Pipeline's lock); the event loop stays free (to_thread) to queue the next batch.
    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05, max_concurrent_batches=1)
    async def generate(self, tickets: list[_Ticket]) -> list[_Clip | Exception | None]:
        return await asyncio.to_thread(self._run, tickets)

    def _run(self, tickets: list[_Ticket]) -> list[_Clip | Exception | None]:
        """One sampling run per group of requests that share (res, steps, sampler, guidance); None for a request
        whose client left before its run."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, t in enumerate(tickets):
            groups[t.request.run_key].append(i)
        clips: list[_Clip | Exception | None] = [None] * len(tickets)
        for (res, steps, sampler, guidance), members in groups.items():
            batch = self.pipe.model(res).sample_batch
            for start in range(0, len(members), batch):
                run = [i for i in members[start:start + batch] if not tickets[i].cancelled]
                try:
                    if run:
                        self._sample_run(tickets, run, clips, res, steps, sampler, guidance)
                except Exception as e:  # fails this run's requests only
                    for i in run:
                        clips[i] = e
        return clips

    def _sample_run(self, tickets: list[_Ticket], run: list[int], clips: list, res: int, steps: int, sampler: str,
                    guidance: float) -> None:
        def stop_if_abandoned(_step: int) -> None:
            if all(tickets[i].cancelled for i in run):
                raise _Abandoned

        run_id = f"{self.name}:{next(self.runs)}"
        t0 = time.perf_counter()
        requests = [tickets[i].request for i in run]
        draws = [VideoDraw(r.seed, 0, r.label) for r in requests]
        tokens = self.pipe.sample(draws, res, steps, sampler, guidance, progress=stop_if_abandoned)
        self.pipe.synchronize()
        sample_ms = 1000 * (time.perf_counter() - t0)
        for k, (i, r) in enumerate(zip(run, requests)):
            if tickets[i].cancelled:
                continue
            t1 = time.perf_counter()
            frames = self.pipe.decode(tokens[k:k + 1], r.frames, res)[0]
            decode_ms = 1000 * (time.perf_counter() - t1)
            video = encode_video(frames, r.format, default_fps(self.configs[res], r.frames))
            clips[i] = _Clip(video, {"X-Seed": str(r.seed), "X-Class": self._label(draws[k], res),
                                     "X-Sample-Ms": f"{sample_ms:.1f}", "X-Decode-Ms": f"{decode_ms:.1f}",
                                     "X-Batch-Size": str(len(run)), "X-Run": run_id, "X-Backend": self.pipe.describe()})

    def _label(self, draw: VideoDraw, res: int) -> str:
        cfg = self.configs[res]
        label = video_label(draw, cfg.num_classes)
        return cfg.class_names[label] if cfg.class_names else str(label)


def deployment(options: ServeOptions, on_command_line: bool = False):
    """The Generator deployment with the replica count (or autoscaling) and resources of `options`."""
    options.check()
    scaling: dict[str, Any] = {"num_replicas": options.replicas}
    if options.min_replicas is not None:
        scaling = {"autoscaling_config": {"min_replicas": options.min_replicas, "max_replicas": options.max_replicas,
                                          "target_ongoing_requests": options.max_batch}}
    # A replica holds what it can batch next; the rest wait at the proxy (bounded: past it, clients get 503 at once);
    # a replica that goes away first finishes its batches (long runs on a CPU).
    return Generator.options(name="Generator", max_ongoing_requests=2 * options.max_batch,
                             max_queued_requests=16 * options.max_batch, graceful_shutdown_timeout_s=300,
                             ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
                             **scaling).bind(asdict(options), on_command_line)


def build_app(args: dict[str, Any]):
    """Application builder for `serve deploy` (a config's `args`) and `serve run nerv_rt.serve.app:build_app k=v`:
    ServeOptions fields."""
    return deployment(ServeOptions.from_args(args))
