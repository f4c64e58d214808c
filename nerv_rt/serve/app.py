"""The Ray Serve application: one deployment, `Generator`, over the Python API.

    POST /generate   JSON request (serve/request.py) -> the clip (video/mp4 or image/gif); headers X-Seed,
                     X-Class, X-Sample-Ms, X-Decode-Ms, X-Batch-Size (videos in its sampling run), X-Run
    GET  /models     resolutions, classes, clip length and frame rate, backend
    GET  /healthz    {"status": "ok"}

Concurrent requests are batched with `@serve.batch`; those that share (res, steps, sampler, guidance) become
one sampling run of n videos (the DiT runs at batch 2n with CFG), each with its own seed's noise, so a request
gets the video `nerv-rt generate --seed S` gives. A batch runs in a worker thread: the replica keeps taking
requests (the next batch) meanwhile. `build_app` is the application builder `serve deploy` imports.
"""
from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import NervError
from ..runtime.pipeline import Pipeline, default_fps
from ..runtime.sampling import VideoDraw, video_label
from .request import FORMATS, GenerateRequest, RequestError, encode_video, parse_request


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

    def check(self) -> None:
        if self.max_batch < 1 or not 0 <= self.batch_wait_ms <= 60_000 or self.replicas < 1:
            raise NervError("--max-batch and --replicas must be >= 1 and --batch-wait-ms in 0..60000")
        if (self.min_replicas is None) != (self.max_replicas is None) or (
                self.min_replicas is not None and not 0 <= self.min_replicas <= self.max_replicas):
            raise NervError("autoscaling needs both --min-replicas and --max-replicas, min <= max")


@dataclass
class _Clip:
    video: bytes
    headers: dict[str, str]


@serve.deployment
class Generator:
    def __init__(self, options: dict[str, Any]):
        self.options = ServeOptions(**options)
        self.pipe = Pipeline.load(self.options.model, backend=self.options.backend, device=self.options.device,
                                  precision=self.options.precision)
        self.configs = {r: m.config for r, m in self.pipe.models.items()}
        self.generate.set_max_batch_size(self.options.max_batch)
        self.generate.set_batch_wait_timeout_s(self.options.batch_wait_ms / 1000)
        self.runs = itertools.count(1)
        self.name = f"{os.getpid()}"

    async def __call__(self, request: Request) -> Response:
        path, method = request.url.path.rstrip("/") or "/", request.method
        try:
            if path == "/healthz" and method == "GET":
                return JSONResponse({"status": "ok"})
            if path == "/models" and method == "GET":
                return JSONResponse(self.describe())
            if path == "/generate" and method == "POST":
                req = parse_request(await request.body(), self.configs)
                clip = await self.generate(req)
                return Response(clip.video, media_type=FORMATS[req.format], headers=clip.headers)
            raise RequestError(404, None, f"no route {method} {path}; POST /generate, GET /models, GET /healthz")
        except RequestError as e:
            return JSONResponse(e.body(), status_code=e.status)
        except NervError as e:  # a request the model cannot serve after all
            return JSONResponse({"error": str(e), "field": None}, status_code=422)

    def describe(self) -> dict[str, Any]:
        return {"resolutions": sorted(self.configs), "backend": self.pipe.describe(),
                "models": {str(r): {"classes": list(c.class_names), "clip_frames": c.frames, "fps": c.fps,
                                    "tokens": c.tokens} for r, c in self.configs.items()},
                "batching": {"max_batch": self.options.max_batch, "batch_wait_ms": self.options.batch_wait_ms}}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)  # both set from the options in __init__
    async def generate(self, requests: list[GenerateRequest]) -> list[_Clip]:
        return await asyncio.to_thread(self._run, requests)

    def _run(self, requests: list[GenerateRequest]) -> list[_Clip]:
        """One sampling run per group of requests that share (res, steps, sampler, guidance)."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[r.run_key].append(i)
        clips: list[_Clip | None] = [None] * len(requests)
        for (res, steps, sampler, guidance), members in groups.items():
            batch = self.pipe.model(res).sample_batch
            for start in range(0, len(members), batch):
                run = members[start:start + batch]
                run_id = f"{self.name}:{next(self.runs)}"
                t0 = time.perf_counter()
                draws = [VideoDraw(requests[i].seed, 0, requests[i].label) for i in run]
                tokens = self.pipe.sample(draws, res, steps, sampler, guidance)
                self.pipe.synchronize()
                sample_ms = 1000 * (time.perf_counter() - t0)
                for k, i in enumerate(run):
                    r = requests[i]
                    t1 = time.perf_counter()
                    frames = self.pipe.decode(tokens[k:k + 1], r.frames, res)[0]
                    decode_ms = 1000 * (time.perf_counter() - t1)
                    video = encode_video(frames, r.format, default_fps(self.configs[res], r.frames))
                    label = self._label(draws[k], res)
                    clips[i] = _Clip(video, {"X-Seed": str(r.seed), "X-Class": label, "X-Sample-Ms": f"{sample_ms:.1f}",
                                             "X-Decode-Ms": f"{decode_ms:.1f}", "X-Batch-Size": str(len(run)),
                                             "X-Run": run_id, "X-Backend": self.pipe.describe()})
        return clips  # type: ignore[return-value]

    def _label(self, draw: VideoDraw, res: int) -> str:
        cfg = self.configs[res]
        label = video_label(draw, cfg.num_classes)
        return cfg.class_names[label] if cfg.class_names else str(label)


def deployment(options: ServeOptions):
    """The Generator deployment with the replica count (or autoscaling) and resources of `options`."""
    options.check()
    scaling: dict[str, Any] = {"num_replicas": options.replicas}
    if options.min_replicas is not None:
        scaling = {"autoscaling_config": {"min_replicas": options.min_replicas, "max_replicas": options.max_replicas,
                                          "target_ongoing_requests": options.max_batch}}
    return Generator.options(name="Generator", max_ongoing_requests=4 * options.max_batch,
                             ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
                             **scaling).bind(asdict(options))


def build_app(args: dict[str, Any]):
    """Application builder for `serve run` / `serve deploy`: args are ServeOptions fields."""
    return deployment(ServeOptions(**args))
