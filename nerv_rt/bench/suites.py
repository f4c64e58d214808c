"""Decoder, generator and scaling suites: run each case in a fresh process, collect figures."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NervError, require
from ..machine import cpu_name
from ..models.presets import PRESETS, RESOLUTIONS
from . import cases
from .memory import run_in_child

SUITES = ("decoder", "generator", "scaling", "all")
SD_VAE_LABEL = "SD-VAE"
PRECISIONS = ("fp32", "bf16", "fp16")

# The paper's table (NeRV-Diffusion, ICLR 2026): A6000, bf16, batch 1. Reference only, never measured here.
PAPER_A6000: dict[str, Any] = {
    "decoder_latency_s": {"SD-VAE": {128: 0.048, 256: 0.260}, "NeRV-VAE-L": {128: 0.032, 256: 0.133}},
    "decoder_vram_gb_256": {"SD-VAE": 4.3, "NeRV-VAE-L": 2.6},
    "generator_latency_s": {"NeRV-Diffusion-L": {128: 6.8, 256: 8.2}, "LARP-L": {256: 20.0},
                            "OmniTokenizer": {256: 139.0}},
    "generator_vram_gb": {"NeRV-Diffusion-L": 2.1},
}


def paper_decoder(model: str) -> tuple[dict[int, float], float]:
    """The paper's decoder figures for a bench row's model label: (latency in s by resolution, VRAM in GB at 256^2)."""
    key = "SD-VAE" if model.startswith("SD-VAE") else "NeRV-VAE-L"
    return PAPER_A6000["decoder_latency_s"][key], PAPER_A6000["decoder_vram_gb_256"][key]


@dataclass
class BenchConfig:
    suite: str = "decoder"
    device: str = "cpu"
    precision: str = "fp32"
    backends: tuple[str, ...] = ("torch",)
    preset: str = "L"
    resolutions: tuple[int, ...] = (128, 256)
    frames: int = 16
    scaling_frames: tuple[int, ...] = (16, 32, 64, 128)
    warmup: int = 1
    repeats: int = 5
    quick: bool = False
    sd_vae: str | None = None  # local diffusers folder with real SD-VAE weights
    generator_source: str | None = None  # checkpoint for the generator suite (default: random-init preset)
    protocols: tuple[tuple[str, str, int], ...] = (("paper", "ddpm", 250), ("fast", "ddim", 50))
    guidance: float = 2.0
    cuda_graph: bool | None = None  # None: each backend's default (see Pipeline.load)

    @classmethod
    def quick_config(cls, **kw) -> BenchConfig:
        """CI-sized: tiny models, reduced-width SD-VAE, 4 frames at 128^2, 1 + 2 runs."""
        base = dict(preset="tiny", resolutions=(128,), frames=4, scaling_frames=(2, 4), warmup=1, repeats=2,
                    quick=True, protocols=(("paper", "ddpm", 8), ("fast", "ddim", 4)))
        return cls(**{**base, **kw})


def check_config(cfg: BenchConfig) -> None:
    if cfg.suite not in SUITES:
        raise NervError(f"unknown suite {cfg.suite!r}; choose from {', '.join(SUITES)}")
    if cfg.preset not in PRESETS:
        raise NervError(f"unknown preset {cfg.preset!r}; choose from {', '.join(PRESETS)}")
    if bad := [r for r in cfg.resolutions if r not in RESOLUTIONS]:
        raise NervError(f"--res {bad[0]}: presets exist at {', '.join(map(str, RESOLUTIONS))}")
    if cfg.precision not in PRECISIONS:
        raise NervError(f"unknown precision {cfg.precision!r}; choose from {', '.join(PRECISIONS)}")
    if cfg.device not in ("cpu", "cuda"):
        raise NervError(f"unknown device {cfg.device!r}; choose cpu or cuda")
    if cfg.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise NervError("--device cuda: no CUDA GPU is available")
        if cfg.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise NervError("--precision bf16 is not supported by this GPU; use fp16 or fp32")
    elif cfg.precision != "fp32":
        raise NervError(f"--precision {cfg.precision} is for CUDA; the CPU benchmarks run fp32")
    if cfg.repeats < 1 or cfg.warmup < 0:
        raise NervError("--repeats must be >= 1")
    from ..engines.select import BACKENDS

    for b in cfg.backends:
        if b not in BACKENDS or b == "auto":
            raise NervError(f"unknown backend {b!r}; choose from {', '.join(x for x in BACKENDS if x != 'auto')}")
        if b in ("torch-cudagraph", "tensorrt") and cfg.device != "cuda":
            raise NervError(f"--backend {b} needs --device cuda")
    if cfg.generator_source and cfg.suite in ("generator", "all"):  # here, not as a child's traceback
        from ..checkpoint import has_dit

        if not has_dit(cfg.generator_source):
            raise NervError(f"{cfg.generator_source}: no DiT in this checkpoint; the generator suite samples with one")
    if cfg.suite in ("decoder", "scaling", "all"):
        require("diffusers")  # the SD-VAE baseline
    if cfg.suite in ("scaling", "all"):
        require("matplotlib")
    if cfg.suite in ("generator", "all") and "onnxruntime" in cfg.backends:
        require("onnx", "onnxruntime")


def summarize(times: list[float]) -> dict:
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)), "runs": times}


# A decoder's memory on CUDA, as the decoder table and its NeRV / SD-VAE ratio read it (here and in gpu_check): the
# torch allocator's peak (weights and activations; both decoders run in torch, so it sees all they hold), one
# definition on every machine, where NVML's per-process figures exist only where NVML sees the process and charge
# each fresh process the libraries' one-time set-up (cuBLAS / cuDNN handles, kernels loaded).
DECODER_MEMORY = "allocator_peak_mb"


def _memory(result: dict, rss_bytes: int, device: str, decoder: bool = False) -> dict:
    """peak_mb: on CUDA a `decoder`'s DECODER_MEMORY; else the NVML per-process peak above the process's level
    before the model was made, where NVML sees the process (it sees TensorRT's and ONNX Runtime's memory too), else
    the allocator's peak (torch's memory only); `peak_of` says which. On CPU the child's peak RSS above its imports."""
    if device == "cuda":
        mem = {k: v for k, v in result.items() if k.endswith("_mb")}
        nvml = "nvml_process_delta_peak_mb"
        of = nvml if nvml in mem and not decoder else DECODER_MEMORY
        return {"peak_mb": mem[of], "peak_of": of.removesuffix("_mb"), **mem}
    return {"peak_mb": rss_bytes / 2**20, "peak_of": "peak_rss", "peak_rss_mb": rss_bytes / 2**20}


def sd_vae_gmacs(res: int, frames: int, quick: bool) -> float:
    import torch
    from diffusers import AutoencoderKL

    from ..models.stats import count_macs

    with torch.device("meta"):
        vae = AutoencoderKL(**(cases.SD_VAE_QUICK_CONFIG if quick else cases.SD_VAE_CONFIG))
        with torch.no_grad():
            return count_macs(lambda z: vae.decode(z), torch.empty(frames, 4, res // 8, res // 8)) / 1e9


def nerv_gmacs(preset_name: str, res: int, frames: int) -> float:
    import torch

    from ..models.nerv import NeRVDecoder
    from ..models.presets import preset
    from ..models.stats import count_macs

    cfg = preset(preset_name, res)
    with torch.device("meta"), torch.no_grad():
        dec = NeRVDecoder(cfg)
        return count_macs(dec, torch.empty(1, cfg.tokens, cfg.token_dim), torch.empty(frames)) / 1e9


def _decoder_row(cfg: BenchConfig, model: str, res: int, frames: int) -> dict:
    common = dict(res=res, frames=frames, device=cfg.device, precision=cfg.precision, warmup=cfg.warmup,
                  repeats=cfg.repeats)
    if model == SD_VAE_LABEL:
        result, rss = run_in_child(cases.sd_vae_decoder, imports=("torch", "diffusers"), quick=cfg.quick,
                                   weights=cfg.sd_vae, **common)
        tokens, gmacs = frames * (res // 8) ** 2, sd_vae_gmacs(res, frames, cfg.quick)
    else:
        result, rss = run_in_child(cases.nerv_decoder, imports=("torch",), preset_name=cfg.preset, **common)
        from ..models.presets import preset

        tokens, gmacs = preset(cfg.preset, res).tokens, nerv_gmacs(cfg.preset, res, frames)
    return {"model": model, "res": res, "frames": frames, "tokens": tokens, "gmacs": gmacs,
            "latency_s": summarize(result["times"]), "memory": _memory(result, rss, cfg.device, decoder=True)}


def nerv_label(cfg: BenchConfig) -> str:
    return f"NeRV-VAE-{cfg.preset}"


def decoder_suite(cfg: BenchConfig, step: Callable[[str], None]) -> list[dict]:
    rows = []
    for res in cfg.resolutions:
        for model in (SD_VAE_LABEL, nerv_label(cfg)):
            step(f"decoder {model} {cfg.frames}x{res}^2")
            rows.append(_decoder_row(cfg, model, res, cfg.frames))
    return rows


def scaling_suite(cfg: BenchConfig, step: Callable[[str], None]) -> list[dict]:
    rows = []
    for res in cfg.resolutions:
        for frames in cfg.scaling_frames:
            for model in (SD_VAE_LABEL, nerv_label(cfg)):
                step(f"scaling {model} {frames}x{res}^2")
                rows.append(_decoder_row(cfg, model, res, frames))
    return rows


def random_checkpoint(preset_name: str, res: int, folder: Path) -> Path:
    """A random-init checkpoint of the preset (latency does not depend on trained weights)."""
    import torch

    from ..checkpoint import Checkpoint, save
    from ..models.dit import ImplicitDiT
    from ..models.hyper_ae import NeRVVAE
    from ..models.presets import preset

    cfg = preset(preset_name, res)
    torch.manual_seed(0)
    path = folder / f"{preset_name}-{res}.pt"
    save(Checkpoint(cfg, NeRVVAE(cfg).state_dict(), ImplicitDiT(cfg).state_dict(), None, torch.ones(cfg.token_dim)), path)
    return path


EXPORTED = ("onnxruntime", "tensorrt", "aoti")  # backends that run an export folder, not the checkpoint


def _export_for(ckpt: str, out: str, precisions: tuple[str, ...], aoti_device: str | None, trt_precision: str | None) -> str:
    """(In a child process.) Export `ckpt` with what the backends need; build TensorRT engines there too."""
    from ..export.onnx_export import export

    folder = export(ckpt, Path(out), precisions=precisions, aoti_device=aoti_device)
    if trt_precision is not None:
        from ..export.trt_build import build_engines
        from ..runtime.sources import read_manifest

        build_engines(folder, read_manifest(folder), trt_precision)
    return str(folder)


def backend_sources(ckpt: Path, cfg: BenchConfig, scratch: Path, step: Callable[[str], None]) -> dict[str, str]:
    """The source each backend runs: the checkpoint, or one export folder with every graph, AOTInductor package
    and TensorRT engine the backends need, made in a child process whatever the order of the backends (a build
    in the parent would hold its GPU memory through every measurement)."""
    exported = [b for b in cfg.backends if b in EXPORTED]
    sources = {b: str(ckpt) for b in cfg.backends if b not in EXPORTED}
    if exported:
        step(f"generator: exporting {ckpt.name}" + (" and building TensorRT engines" if "tensorrt" in exported else ""))
        precisions = ("fp32",) if cfg.precision == "fp32" else ("fp32", cfg.precision)
        folder, _ = run_in_child(_export_for, imports=("torch",), ckpt=str(ckpt), out=str(scratch / f"export-{ckpt.stem}"),
                                 precisions=precisions, aoti_device=cfg.device if "aoti" in exported else None,
                                 trt_precision=cfg.precision if "tensorrt" in exported else None)
        sources.update({b: folder for b in exported})
    return sources


def generator_suite(cfg: BenchConfig, step: Callable[[str], None]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="nerv-bench-") as scratch:
        for res in cfg.resolutions:
            ckpt = Path(cfg.generator_source) if cfg.generator_source else random_checkpoint(cfg.preset, res, Path(scratch))
            sources = backend_sources(ckpt, cfg, Path(scratch), step)
            for backend in cfg.backends:
                for name, sampler, steps in cfg.protocols:
                    step(f"generator {backend} {name} ({sampler} {steps}) {cfg.frames}x{res}^2")
                    result, rss = run_in_child(cases.generation, imports=("torch",), source=sources[backend],
                                               backend=backend, device=cfg.device, precision=cfg.precision,
                                               frames=cfg.frames, steps=steps, sampler=sampler, guidance=cfg.guidance,
                                               warmup=cfg.warmup, repeats=cfg.repeats, cuda_graph=cfg.cuda_graph)
                    rows.append({"model": f"NeRV-Diffusion-{cfg.preset}", "backend": result["backend"], "res": res,
                                 "precision": result["precision"], "frames": cfg.frames, "protocol": name,
                                 "sampler": sampler, "steps": steps, "guidance": cfg.guidance,
                                 "latency_s": summarize(result["times"]), "sample_s": summarize(result["sample_times"]),
                                 "decode_s": summarize(result["decode_times"]),
                                 "per_step_ms": 1000 * float(np.median(result["sample_times"])) / steps,
                                 "memory": _memory(result, rss, cfg.device)})
    return rows


def machine_info(cfg: BenchConfig) -> dict:
    import torch

    info = {"device": cfg.device, "cpu": cpu_name(), "cpu_cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}
    if cfg.device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), compute_capability=f"{p.major}.{p.minor}",
                    cuda=torch.version.cuda)
    for dist in ("diffusers", "onnxruntime", "onnxruntime-gpu", "onnx"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    from ..export.trt_build import import_tensorrt, tensorrt_available

    if tensorrt_available():  # the library itself: tensorrt-stubs alone makes an empty `tensorrt` package
        info["tensorrt"] = import_tensorrt().__version__
    info["device_name"] = info.get("gpu", info["cpu"])
    return info
