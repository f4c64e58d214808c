"""Runtime measurements on CPU, recorded as ratios from one run (bench/results/<out>.{json,md}):

1. ONNX Runtime vs torch eager, same random-init model and inputs: the decoder rendering 16 frames at
   128^2 (tiny, S) and one DiT forward at the CFG batch 2 (S). Target: ORT >= 1.3x faster.
2. Peak memory of generation for 16 vs 512 frames at 128^2 with chunked decoding (chunk 16), peak RSS
   of a fresh process above its imports: `nerv-rt generate`'s path (`Pipeline.render` into an .mp4;
   target <= 1.2x) and the array API `Pipeline.generate` (for reference: it returns every frame).

    python bench/runtime_checks.py --out cpu-runtime
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

from nerv_rt.bench.cases import engine_medians
from nerv_rt.bench.memory import run_in_child
from nerv_rt.bench.suites import BenchConfig, machine_info, random_checkpoint
from nerv_rt.export.onnx_export import export
from nerv_rt.formats import atomic_write_text
from nerv_rt.runtime.pipeline import Pipeline

RESULTS = Path(__file__).resolve().parent / "results"


def speed(preset_name: str, scratch: Path, repeats: int) -> dict:
    ckpt = random_checkpoint(preset_name, 128, scratch)
    folder = export(ckpt, scratch / f"{preset_name}-export")
    med = {backend: run_in_child(engine_medians, imports=("numpy", "onnxruntime", "torch"), source=str(source),
                                 backend=backend, repeats=repeats)[0]
           for backend, source in (("torch", ckpt), ("onnxruntime", folder))}
    return {what: {"torch_s": med["torch"][what], "onnxruntime_s": med["onnxruntime"][what],
                   "speedup_ort_over_torch": med["torch"][what] / med["onnxruntime"][what]}
            for what in ("decoder", "dit")}


def generate_frames(source: str, backend: str, frames: int, out: str | None) -> int:
    """`nerv-rt generate`'s path (sample, then render chunk by chunk into `out`), or with out=None
    the array API (`Pipeline.generate`), whose returned array itself grows with the frame count."""
    pipe = Pipeline.load(source, backend=backend, device="cpu")
    if out is None:
        return int(pipe.generate(frames=frames, steps=10, seed=0, chunk=16).shape[1])
    pipe.render(pipe.sample_tokens(steps=10, seed=0), out, frames=frames, chunk=16)
    return frames


# glibc raises its mmap threshold as large blocks are freed, after which torch's per-chunk activations
# come from a heap that fragments and grows; a fixed threshold keeps eager torch flat too.
FIXED_MMAP = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def memory(scratch: Path) -> dict:
    ckpt = random_checkpoint("tiny", 128, scratch)
    folder = export(ckpt, scratch / "tiny-mem-export")
    cases = [("onnxruntime render", folder, True, {}), ("onnxruntime array", folder, False, {}),
             ("torch render", ckpt, True, {}), ("torch array", ckpt, False, {}),
             ("torch render, MALLOC_MMAP_THRESHOLD_=131072", ckpt, True, FIXED_MMAP)]
    out = {}
    for label, source, render, env in cases:
        backend = label.split()[0]
        peaks = {}
        for frames in (16, 512):
            target = str(scratch / f"{backend}-{frames}.mp4") if render else None
            with mock.patch.dict(os.environ, env):  # read by the child's libc at start-up
                n, peak = run_in_child(generate_frames, imports=("numpy", "onnxruntime", "torch", "av"),
                                       source=str(source), backend=backend, frames=frames, out=target)
            assert n == frames
            peaks[frames] = peak / 2**20
        out[label] = {"peak_mb_16": peaks[16], "peak_mb_512": peaks[512], "ratio_512_over_16": peaks[512] / peaks[16]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="cpu-runtime", help="results/<out>.json and .md")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        doc = {"machine": machine_info(BenchConfig()), "repeats": args.repeats,
               "speed": {p: speed(p, scratch, args.repeats) for p in ("tiny", "S")},
               "memory_16_vs_512_frames": memory(scratch)}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{args.out}.json", json.dumps(doc, indent=2) + "\n")
    lines = [f"# Runtime checks on {doc['machine']['device_name']} (CPU, fp32, torch {doc['machine']['torch']}, "
             f"onnxruntime {doc['machine'].get('onnxruntime')})", "",
             f"Medians of {args.repeats} calls, one child process per backend, random-init models.", "",
             "| what | torch eager (ms) | ONNX Runtime (ms) | ORT speed-up | target |", "|---|---|---|---|---|"]
    for p, rows in doc["speed"].items():
        for what, label in (("decoder", "decoder 16 frames @128^2"), ("dit", "DiT forward, batch 2")):
            r = rows[what]
            lines.append(f"| {label} ({p}) | {1000 * r['torch_s']:.1f} | {1000 * r['onnxruntime_s']:.1f} | "
                         f"{r['speedup_ort_over_torch']:.2f}x | >= 1.3x: {'met' if r['speedup_ort_over_torch'] >= 1.3 else 'MISSED'} |")
    lines += ["", "| generate (tiny, 128^2, chunk 16, 10 steps) | peak 16 frames (MB) | peak 512 frames (MB) | ratio | target |",
              "|---|---|---|---|---|"]
    for what, r in doc["memory_16_vs_512_frames"].items():
        target = f"<= 1.2: {'met' if r['ratio_512_over_16'] <= 1.2 else 'MISSED'}" if "render" in what else "-"
        lines.append(f"| {what} | {r['peak_mb_16']:.0f} | {r['peak_mb_512']:.0f} | {r['ratio_512_over_16']:.2f} | {target} |")
    lines.append("\nPeak memory: RSS high-water mark of a fresh process above its imports. `render` is what "
                 "`nerv-rt generate` does (frames go chunk by chunk into an .mp4); `array` is "
                 "`Pipeline.generate`, which returns all frames (25 MB of uint8 at 512 frames).\n")
    atomic_write_text(RESULTS / f"{args.out}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
