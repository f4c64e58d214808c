"""AOTInductor packages against torch eager and ONNX Runtime on this CPU, recorded as ratios from one run
(bench/results/<out>.{json,md}): the decoder rendering 16 frames at 128^2 and 256^2, and one DiT forward at the
CFG batch 2 (at 128^2), for presets S and L. Random-init models (speed does not depend on the weights), the same
seeded inputs on every backend, one child process per backend, medians of back-to-back calls after a warm-up.
Target (issue): aoti >= 1.5x torch eager on the decoder and on the DiT step.

    python bench/aoti_checks.py --out cpu-aoti
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nerv_rt.bench.cases import engine_medians
from nerv_rt.bench.memory import run_in_child
from nerv_rt.bench.suites import BenchConfig, machine_info, random_checkpoint
from nerv_rt.export.onnx_export import export
from nerv_rt.formats import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("torch", "onnxruntime", "aoti")
TARGET = 1.5


def _export(ckpt: str, out: str, graphs: tuple[str, ...]) -> tuple[str, float]:
    t0 = time.perf_counter()
    folder = export(ckpt, Path(out), aoti_device="cpu", graphs_wanted=graphs)
    return str(folder), time.perf_counter() - t0


def measure(preset: str, res: int, scratch: Path, repeats: int) -> dict:
    graphs = ("decoder", "dit") if res == 128 else ("decoder",)
    ckpt = random_checkpoint(preset, res, scratch)
    (folder, export_s), _ = run_in_child(_export, imports=("torch",), ckpt=str(ckpt), out=str(scratch / f"{preset}-{res}"),
                                         graphs=graphs)
    med = {b: run_in_child(engine_medians, imports=("numpy", "onnxruntime", "torch"), source=str(ckpt if b == "torch" else folder),
                           backend=b, repeats=repeats, graphs=graphs)[0] for b in BACKENDS}
    ckpt.unlink()
    return {"preset": preset, "res": res, "export_with_aoti_s": export_s, "repeats": repeats,
            **{g: {**{f"{b}_s": med[b][g] for b in BACKENDS},
                   "aoti_speedup_over_torch": med["torch"][g] / med["aoti"][g],
                   "onnxruntime_speedup_over_torch": med["torch"][g] / med["onnxruntime"][g]} for g in graphs}}


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# AOTInductor on {m['device_name']} (CPU, fp32, torch threads {m['torch_threads']}, torch {m['torch']}, onnxruntime {m.get('onnxruntime')})", "",
             "Random-init models, same inputs on every backend, one child process per backend, median of back-to-back "
             "calls after a warm-up. Speed-ups are against torch eager in the same run.", "",
             "| what | preset | torch eager (ms) | ONNX Runtime (ms) | aoti (ms) | aoti speed-up | ORT speed-up | target aoti >= 1.5x |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        for g, label in (("decoder", f"decoder 16 frames @{r['res']}^2"), ("dit", "DiT forward, CFG batch 2")):
            if g in r:
                x = r[g]
                met = "met" if x["aoti_speedup_over_torch"] >= TARGET else "MISSED"
                lines.append(f"| {label} | {r['preset']} | {1000 * x['torch_s']:.1f} | {1000 * x['onnxruntime_s']:.1f} | "
                             f"{1000 * x['aoti_s']:.1f} | {x['aoti_speedup_over_torch']:.2f}x | "
                             f"{x['onnxruntime_speedup_over_torch']:.2f}x | {met} |")
    lines += ["", "Export with AOTInductor packages (ONNX graphs, validation, compile) per row: "
              + ", ".join(f"{r['preset']} @{r['res']}: {r['export_with_aoti_s']:.0f} s" for r in doc["rows"]) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="cpu-aoti", help="results/<out>.json and .md")
    ap.add_argument("--presets", default="S,L")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(p, res, Path(tmp), repeats=10 if p == "S" else 3) for p in args.presets.split(",") for res in (128, 256)]
    doc = {"machine": machine_info(BenchConfig()), "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / f"{args.out}.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(RESULTS / f"{args.out}.md", render(doc))
    print(render(doc))


if __name__ == "__main__":
    main()
