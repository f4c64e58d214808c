"""A generation request: JSON in, checked field by field before it joins a batch (no Ray here).

    {"class": "pan_left", "seed": 0, "frames": 16, "res": 128, "steps": 50, "sampler": "ddim",
     "guidance": 2.0, "format": "mp4"}

Every field is optional (defaults below, as `nerv-rt generate`'s); a bad one is a RequestError naming it.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..diffusion import SAMPLERS
from ..errors import NervError
from ..models.presets import ModelConfig
from ..runtime.pipeline import DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_GUIDANCE, MAX_STEPS, Pipeline
from ..runtime.sampling import MAX_SEED
from ..runtime.video_io import save_video

MAX_BODY_BYTES = 4096
MAX_FRAMES = 256  # per request: a served clip is built in memory
FORMATS = {"mp4": "video/mp4", "gif": "image/gif"}
FIELDS = ("class", "seed", "frames", "res", "steps", "sampler", "guidance", "format")


class RequestError(Exception):
    def __init__(self, status: int, field: str | None, message: str):
        super().__init__(message)
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class GenerateRequest:
    label: int | None  # None: the seed's stream draws the class
    seed: int
    frames: int
    res: int
    steps: int
    sampler: str
    guidance: float
    format: str

    @property
    def run_key(self) -> tuple:
        """Requests with the same key can share one sampling run."""
        return self.res, self.steps, self.sampler, self.guidance


def _int(d: dict, field: str, default: int, lo: int, hi: int) -> int:
    v = d.get(field, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise RequestError(422, field, f"{field} must be an integer in {lo}..{hi}, got {v!r}"[:200])
    return v


def parse_request(body: bytes, models: dict[int, ModelConfig]) -> GenerateRequest:
    """Check a POST /generate body against the served models; RequestError (4xx) names the bad field."""
    if len(body) > MAX_BODY_BYTES:
        raise RequestError(413, None, f"request body of {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        d = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, None, f"body is not JSON ({e})") from None
    except RecursionError:
        raise RequestError(400, None, "body is JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise RequestError(400, None, "body must be a JSON object")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise RequestError(400, unknown[0], f"unknown field {unknown[0]!r}; fields: {', '.join(FIELDS)}")
    first = models[min(models)]
    res = d.get("res", first.res)
    if isinstance(res, bool) or not isinstance(res, int) or res not in models:
        raise RequestError(422, "res", f"res {res!r} is not served; resolutions: {sorted(models)}"[:200])
    cfg = models[res]
    label = d.get("class")
    if label is not None:  # a name or an index ("3" too), read as `generate --class` reads it
        unknown = RequestError(422, "class", f"unknown class {label!r}; classes: "
                                             f"{', '.join(cfg.class_names) or f'0..{cfg.num_classes - 1}'}"[:300])
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise unknown
        try:
            label = Pipeline.class_index(label, cfg)
        except NervError:
            raise unknown from None
    sampler = d.get("sampler", "ddim")
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise RequestError(422, "sampler", f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    guidance = d.get("guidance", DEFAULT_GUIDANCE)
    try:
        guidance = float(guidance) if isinstance(guidance, (int, float)) and not isinstance(guidance, bool) else None
    except OverflowError:  # an integer of hundreds of digits
        guidance = None
    if guidance is None or not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise RequestError(422, "guidance", f"guidance must be a number in 0..{MAX_GUIDANCE:g}, got {d.get('guidance')!r}"[:200])
    fmt = d.get("format", "mp4")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise RequestError(422, "format", f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return GenerateRequest(label=label, seed=_int(d, "seed", 0, 0, MAX_SEED), frames=_int(d, "frames", cfg.frames, 1, MAX_FRAMES),
                           res=res, steps=_int(d, "steps", DEFAULT_STEPS, 1, MAX_STEPS), sampler=sampler,
                           guidance=guidance, format=fmt)


def encode_video(frames: np.ndarray, fmt: str, fps: Fraction | float) -> bytes:
    """uint8 frames [F, H, W, 3] as the bytes of an .mp4 or .gif file (written as `nerv-rt generate` writes it)."""
    with tempfile.TemporaryDirectory(prefix="nerv-rt-serve-") as tmp:
        (path,) = save_video(frames, Path(tmp) / f"clip.{fmt}", fps=fps)
        return path.read_bytes()
