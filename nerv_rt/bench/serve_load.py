"""Load on `nerv-rt serve`: throughput (clips/s) and p50 / p95 latency of POST /generate at several concurrencies,
with batching on (`--max-batch K`) and off (`--max-batch 1`). Closed loop: each of `c` clients sends its next
request when its last one returned. The server is the real CLI in a subprocess on loopback.

    python -m nerv_rt.bench.serve_load --out bench/results/cpu-serve        # the tiny default on this CPU
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..formats import atomic_write_text
from .memory import OWN_SESSIONS

STARTUP_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict[str, Any], timeout: float = 600) -> tuple[int, dict[str, str], float]:
    """(status, lower-case headers, seconds) of one POST /generate."""
    req = urllib.request.Request(f"{url}/generate", data=json.dumps(body).encode(), method="POST")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, time.perf_counter() - t0
    except urllib.error.HTTPError as e:
        return e.code, {}, time.perf_counter() - t0


class Server:
    """`nerv-rt serve` in a subprocess of its own, stopped with SIGTERM as a process manager would (the CLI takes it
    as Ctrl-C). Not SIGINT: a process started from a background job inherits SIGINT ignored, and Python then never
    turns it into KeyboardInterrupt; the server kept running and its step or test ran out of time."""

    def __init__(self, args: list[str], startup_s: float = STARTUP_S):
        self.startup_s, self.stderr = startup_s, ""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="nerv-rt-serve-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.proc = subprocess.Popen([sys.executable, "-m", "nerv_rt", "serve", "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env, start_new_session=True)
        OWN_SESSIONS.add(self.proc.pid)  # stopped with SIGTERM if a gpu_check step runs out of time

    def __enter__(self) -> Server:
        deadline = time.time() + self.startup_s
        while time.time() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        with contextlib.suppress(ProcessLookupError):  # the group may outlive an exited server (Ray), or be gone
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        OWN_SESSIONS.discard(self.proc.pid)
        log = Path(self.log.name).read_text()
        Path(self.log.name).unlink(missing_ok=True)
        raise RuntimeError(f"nerv-rt serve did not come up (exit code {self.proc.returncode}): {log[-2000:]}")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)  # the CLI takes Serve and Ray down
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        OWN_SESSIONS.discard(self.proc.pid)
        self.stderr = Path(self.log.name).read_text()  # kept for the caller: how the server ended
        Path(self.log.name).unlink(missing_ok=True)


def closed_loop(url: str, concurrency: int, total: int, body: dict[str, Any]) -> dict[str, Any]:
    """`total` requests from `concurrency` clients (seeds 0..total-1), after one warm-up request per client."""
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda s: post(url, {**body, "seed": 10_000 + s}), range(concurrency)))  # warm-up (captures, sessions)
        t0 = time.perf_counter()
        results = list(pool.map(lambda s: post(url, {**body, "seed": s}), range(total)))
        wall = time.perf_counter() - t0
    bad = [r[0] for r in results if r[0] != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} of {total} requests failed (status {bad[0]})")
    latency = np.array([r[2] for r in results])
    return {"concurrency": concurrency, "requests": total, "clips_per_s": total / wall,
            "p50_s": float(np.percentile(latency, 50)), "p95_s": float(np.percentile(latency, 95)),
            "sampling_runs": len({r[1]["x-run"] for r in results}),
            "mean_batch": float(np.mean([int(r[1]["x-batch-size"]) for r in results]))}


def load_table(model: str, serve_args: list[str], concurrencies: tuple[int, ...], max_batch: int,
               body: dict[str, Any], rounds: int = 2, batching_modes: tuple[bool, ...] = (True, False)) -> list[dict[str, Any]]:
    rows = []
    for batching in batching_modes:
        args = [*serve_args, "--model", model, "--max-batch", str(max_batch if batching else 1)]
        with Server(args) as server:
            for c in concurrencies:
                rows.append({"batching": batching, **closed_loop(server.url, c, max(4, rounds * c), body)})
    return rows


def speedups(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Batching on over off, clips/s, per concurrency."""
    by = {(r["batching"], r["concurrency"]): r["clips_per_s"] for r in rows}
    return {c: by[(True, c)] / by[(False, c)] for b, c in by if b and (False, c) in by}


def render(doc: dict[str, Any]) -> str:
    lines = [f"# nerv-rt serve under load: {doc['device']}", "",
             f"{doc['model']} ({doc['backend']}), request {json.dumps(doc['body'])}, closed loop, one replica, "
             f"batching on = --max-batch {doc['max_batch']} --batch-wait-ms {doc['batch_wait_ms']:g}, off = --max-batch 1.", "",
             "| batching | concurrency | requests | clips/s | p50 (s) | p95 (s) | sampling runs | mean videos per run |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        lines.append(f"| {'on' if r['batching'] else 'off'} | {r['concurrency']} | {r['requests']} | {r['clips_per_s']:.2f} | "
                     f"{r['p50_s']:.2f} | {r['p95_s']:.2f} | {r['sampling_runs']} | {r['mean_batch']:.1f} |")
    lines += ["", "Batching speed-up (clips/s, on / off): " + ", ".join(
        f"{s:.2f}x at concurrency {c}" for c, s in sorted(doc["speedup"].items())) + ".", ""]
    return "\n".join(lines)


def run_load(out: Path, model: str, serve_args: list[str], device_name: str, backend: str,
             concurrencies: tuple[int, ...] = (1, 4, 16), max_batch: int = 16, batch_wait_ms: float = 100.0,
             body: dict[str, Any] | None = None, batching: tuple[bool, ...] = (True, False)) -> dict[str, Any]:
    body = body or {"frames": 16, "steps": 50}
    rows = load_table(model, [*serve_args, "--batch-wait-ms", str(batch_wait_ms)], concurrencies, max_batch, body,
                      batching_modes=batching)
    doc = {"device": device_name, "model": model, "backend": backend, "body": body, "max_batch": max_batch,
           "batch_wait_ms": batch_wait_ms, "rows": rows, "speedup": speedups(rows)}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "results.md", render(doc))
    return doc


def main() -> None:
    from ..machine import cpu_name

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--backend", default="onnxruntime")
    args = ap.parse_args()
    doc = run_load(args.out, args.model, ["--backend", args.backend, "--device", "cpu", "--num-cpus", "2"],
                   f"{cpu_name()} ({os.cpu_count()} cores)", args.backend)
    print(render(doc))


if __name__ == "__main__":
    main()
