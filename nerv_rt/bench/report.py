"""results.json, results.md (the paper's table layout, paper figures in their own column) and the
scaling plot. Every measured figure carries its unit; paper figures are labelled as the paper's."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ..formats import atomic_path, atomic_write_text
from .suites import PAPER_A6000, BenchConfig, paper_decoder

TARGETS = {  # the paper's ratios NeRV-L / SD-VAE (A6000): latency 0.032/0.048, 0.133/0.260; VRAM 2.6/4.3
    "latency_ratio_128": 0.67, "latency_ratio_256": 0.51, "memory_ratio_256": 0.6,
}


def decoder_ratios(rows: list[dict]) -> dict[str, float]:
    """NeRV / SD-VAE per resolution (latency medians, peak memory), and latency growth 128 -> 256."""
    by = {(r["model"].startswith("SD-VAE"), r["res"]): r for r in rows}
    out: dict[str, float] = {}
    for res in sorted({r["res"] for r in rows}):
        sd, nerv = by.get((True, res)), by.get((False, res))
        if sd and nerv:
            out[f"latency_ratio_{res}"] = nerv["latency_s"]["median"] / sd["latency_s"]["median"]
            out[f"memory_ratio_{res}"] = nerv["memory"]["peak_mb"] / sd["memory"]["peak_mb"]
    if all((m, r) in by for m in (True, False) for r in (128, 256)):
        out["sd_vae_growth_128_to_256"] = by[(True, 256)]["latency_s"]["median"] / by[(True, 128)]["latency_s"]["median"]
        out["nerv_growth_128_to_256"] = by[(False, 256)]["latency_s"]["median"] / by[(False, 128)]["latency_s"]["median"]
    return out


def target_checks(ratios: dict[str, float]) -> list[dict]:
    checks = [{"target": f"{k} <= {v}", "value": ratios[k], "met": ratios[k] <= v} for k, v in TARGETS.items() if k in ratios]
    if "nerv_growth_128_to_256" in ratios:
        g_n, g_s = ratios["nerv_growth_128_to_256"], ratios["sd_vae_growth_128_to_256"]
        checks.append({"target": "NeRV latency grows less than SD-VAE's from 128^2 to 256^2", "value": g_n / g_s,
                       "met": g_n < g_s})
    return checks


def write_results(out: Path, cfg: BenchConfig, machine: dict, results: dict) -> dict:
    """Write results.json, results.md and (with scaling rows) scaling.png into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
           "config": vars(cfg), "paper_a6000": PAPER_A6000,
           "units": {"latency_s": "seconds", "memory.*_mb": "MiB", "gmacs": "10^9 multiply-accumulates"},
           **results}
    if "decoder" in results:
        doc["decoder_ratios"] = decoder_ratios(results["decoder"])
        if not cfg.quick:  # reduced models: their ratios say nothing about the paper's targets
            doc["targets"] = target_checks(doc["decoder_ratios"])
    atomic_write_text(out / "results.json", json.dumps(doc, indent=2) + "\n")
    atomic_write_text(out / "results.md", render_markdown(doc))
    if results.get("scaling"):
        plot_scaling(results["scaling"], out / "scaling.png", machine["device_name"])
    return doc


def _mem(row: dict) -> str:
    return f"{row['memory']['peak_mb'] / 1024:.2f}"


def render_markdown(doc: dict) -> str:
    m, c = doc["machine"], doc["config"]
    mem_kind = "allocator peak" if m["device"] == "cuda" else "peak RSS of a fresh process, above its imports"
    lines = [f"# nerv-rt bench: {m['device_name']}", "",
             f"{doc['created']} | device {m['device']} | precision {c['precision']} | torch {m['torch']} | "
             f"{c['repeats']} timed runs after {c['warmup']} warm-up (median, p90)" + (" | **--quick (reduced models)**" if c["quick"] else ""),
             "", f"Memory: {mem_kind}. Paper figures: NeRV-Diffusion (ICLR 2026), A6000, bf16, batch 1; "
             "they are the paper's, not measurements of this run.", ""]
    if "decoder" in doc:
        lines += ["## Decoder: one 16-frame video" if c["frames"] == 16 else f"## Decoder: one {c['frames']}-frame video", "",
                  "| model | res | tokens | GMACs | latency median (s) | p90 (s) | peak memory (GB) | paper A6000 latency (s) | paper VRAM (GB) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in doc["decoder"]:
            latency, vram = paper_decoder(r["model"])
            p_lat, p_mem = latency.get(r["res"], ""), vram if r["res"] == 256 else ""
            lines.append(f"| {r['model']} | {r['res']} | {r['tokens']} | {r['gmacs']:.0f} | {r['latency_s']['median']:.3f} | "
                         f"{r['latency_s']['p90']:.3f} | {_mem(r)} | {p_lat} | {p_mem} |")
        lines += ["", "| ratio NeRV / SD-VAE | measured | paper (A6000) | target met |", "|---|---|---|---|"]
        if c["quick"]:
            lines[-2:] = ["", f"Quick run (reduced SD-VAE, NeRV {c['preset']}, {c['frames']} frames): no ratio is "
                          "compared to the paper.",
                          "", "| ratio NeRV / SD-VAE | measured |", "|---|---|"]
        paper = {"latency_ratio_128": 0.032 / 0.048, "latency_ratio_256": 0.133 / 0.260, "memory_ratio_256": 2.6 / 4.3}
        met = {t["target"].split(" ")[0]: t["met"] for t in doc.get("targets", [])}
        for k, v in doc["decoder_ratios"].items():
            p = f"{paper[k]:.2f}" if k in paper else ""
            lines.append(f"| {k} | {v:.2f} |" if c["quick"] else
                         f"| {k} | {v:.2f} | {p} | {'yes' if met.get(k) else ('no' if k in met else '')} |")
        for t in doc.get("targets", []):
            if not t["target"].startswith(("latency_ratio", "memory_ratio")):
                lines.append(f"| {t['target']} | {t['value']:.2f} |  | {'yes' if t['met'] else 'no'} |")
        lines.append("")
    if doc.get("generator"):
        lines += ["## Generator: sampling + decoding one video", "",
                  "| model | backend | res | protocol | steps | latency median (s) | sampling (s) | decoding (s) | "
                  "per step (ms) | peak memory (GB) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in doc["generator"]:
            lines.append(f"| {r['model']} | {r['backend']} | {r['res']} | {r['protocol']} ({r['sampler']}, CFG {r['guidance']}) | "
                         f"{r['steps']} | {r['latency_s']['median']:.3f} | {r['sample_s']['median']:.3f} | "
                         f"{r['decode_s']['median']:.3f} | {r['per_step_ms']:.1f} | {_mem(r)} |")
        lines += ["", "Paper references (A6000, not measured here): "
                  + "; ".join(f"{k} {', '.join(f'{v} s at {r}^2' for r, v in d.items())}"
                              for k, d in PAPER_A6000["generator_latency_s"].items())
                  + f"; NeRV-Diffusion-L VRAM {PAPER_A6000['generator_vram_gb']['NeRV-Diffusion-L']} GB.", ""]
    if doc.get("scaling"):
        lines += ["## Scaling", "", "| model | res | frames | latency median (s) | peak memory (GB) |", "|---|---|---|---|---|"]
        for r in doc["scaling"]:
            lines.append(f"| {r['model']} | {r['res']} | {r['frames']} | {r['latency_s']['median']:.3f} | {_mem(r)} |")
        lines += ["", "![scaling](scaling.png)", ""]
    return "\n".join(lines)


def plot_scaling(rows: list[dict], path: Path, device_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for (model, res) in sorted({(r["model"], r["res"]) for r in rows}):
        pts = sorted((r["frames"], r["latency_s"]["median"], r["memory"]["peak_mb"] / 1024) for r in rows
                     if r["model"] == model and r["res"] == res)
        style = "-" if model.startswith("SD-VAE") else "--"
        ax_t.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=f"{model} {res}^2")
        ax_m.plot([p[0] for p in pts], [p[2] for p in pts], style, marker="o", label=f"{model} {res}^2")
    for ax, label in ((ax_t, "latency (s)"), (ax_m, "peak memory (GB)")):
        ax.set_xlabel("frames")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Decoder scaling on {device_name}")
    fig.tight_layout()
    with atomic_path(path) as tmp:  # keeps the .png suffix, from which matplotlib takes the format
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
