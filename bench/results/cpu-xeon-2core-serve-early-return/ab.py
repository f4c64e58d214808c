"""`nerv-rt serve` of the tree given as argv[1] (its nerv_rt must be the one imported: PYTHONPATH=<tree>) under
closed-loop load on loopback, one replica, the tiny default on onnxruntime, --max-batch 16, at --batch-wait-ms
argv[3]; rows appended to the JSON-lines file argv[2].

- uniform: 16 frames, DDIM 50, at concurrency 1 (16 requests) and 16 (128 requests), as bench/serve_load.py;
- mixed: 16 clients, every 4th request 400 steps, the others 20 (64 requests): the latency of each kind.
"""
import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import nerv_rt
from nerv_rt.bench.serve_load import Server, closed_loop, post

tree, out, wait = sys.argv[1], sys.argv[2], sys.argv[3]
assert nerv_rt.__file__.startswith(tree), nerv_rt.__file__
args = ["--backend", "onnxruntime", "--device", "cpu", "--num-cpus", "2", "--max-batch", "16", "--batch-wait-ms", wait]
rows = []
with Server(args) as server:
    head = urllib.request.Request(f"{server.url}/healthz", method="HEAD")
    try:  # which code serves: HEAD /healthz is 405 before the change, 200 after
        with urllib.request.urlopen(head, timeout=30) as r:
            head_status = r.status
    except urllib.error.HTTPError as e:
        head_status = e.code
    for c, total in ((1, 16), (16, 128)):
        rows.append({"load": "uniform", **closed_loop(server.url, c, total, {"frames": 16, "steps": 50})})
    body = lambda s: {"frames": 16, "steps": 400 if s % 4 == 0 else 20, "seed": s}  # noqa: E731
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda s: post(server.url, body(s)), range(16)))  # warm-up
        t0 = time.perf_counter()
        results = list(pool.map(lambda s: (s, post(server.url, body(s))), range(64)))
        wall = time.perf_counter() - t0
    assert all(r[0] == 200 for _, r in results)
    lat = {k: [r[2] for s, r in results if (s % 4 == 0) == (k == "400 steps")] for k in ("400 steps", "20 steps")}
    rows.append({"load": "mixed", "concurrency": 16, "requests": 64, "clips_per_s": 64 / wall,
                 **{f"p50_s {k}": float(np.percentile(v, 50)) for k, v in lat.items()},
                 **{f"p95_s {k}": float(np.percentile(v, 95)) for k, v in lat.items()}})
with open(out, "a") as f:
    for r in rows:
        f.write(json.dumps({"tree": tree, "batch_wait_ms": float(wait), "head_healthz": head_status, **r}) + "\n")
