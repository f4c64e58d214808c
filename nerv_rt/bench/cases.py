"""The measured work, one function per case; each runs in a fresh process (see memory.run_in_child).

A case builds its model and inputs, warms up, then times `repeats` runs: CUDA events on GPU,
perf_counter on CPU. Weights are random: latency and memory do not depend on their values.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

SD_VAE_CONFIG = dict(  # Stable Diffusion 1.x VAE (49.5 M decoder parameters)
    in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, sample_size=512, layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512],
)
SD_VAE_QUICK_CONFIG = {**SD_VAE_CONFIG, "block_out_channels": [32, 32, 64, 64], "layers_per_block": 1}
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def hot_path_feeds(cfg, asarray: Callable) -> dict[str, dict]:
    """Seeded inputs of the two hot paths of a model config, made with a backend's `asarray`: the
    decoder rendering 16 frames of one video, and one DiT forward at the CFG batch of 2."""
    rng = np.random.default_rng(0)
    return {"decoder": {"tokens": asarray(rng.standard_normal((1, cfg.tokens, cfg.token_dim), dtype=np.float32)),
                        "frame_t": asarray(np.linspace(0, 1, 16, dtype=np.float32))},
            "dit": {"x_t": asarray(rng.standard_normal((2, cfg.tokens, cfg.token_dim), dtype=np.float32)),
                    "t": asarray(np.array([500.0, 500.0], np.float32)),
                    "y": asarray(np.array([0, cfg.num_classes], np.int64))}}


def medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each fn: a warm-up, then `repeats` calls back to back (as in the sampling loop,
    then the decoding loop; alternating two ONNX Runtime sessions makes their spinning thread pools compete)."""
    out = {}
    for k, fn in fns.items():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[k] = float(np.median(times))
    return out


def engine_medians(source: str, backend: str, repeats: int, graphs: tuple[str, ...] = ("decoder", "dit")) -> dict[str, float]:
    """Medians of the decoder (16 frames) and one DiT forward (CFG batch 2) on one CPU backend, on the same seeded
    inputs whatever the backend. Run it in a child process per backend: two runtimes' thread pools in one
    process spin against each other."""
    from ..runtime.pipeline import Pipeline

    m = Pipeline.load(source, backend=backend, device="cpu").model()
    feeds = hot_path_feeds(m.config, m.backend.asarray)
    return medians({g: (lambda g=g: m.engine(g)(**feeds[g])) for g in graphs}, repeats)


def time_runs(fn: Callable[[], Any], device: str, warmup: int, repeats: int) -> list[float]:
    """Seconds per call of fn after `warmup` untimed calls."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times


def already_made(fn: Callable[[], Any]) -> Callable[[], Callable[[], Any]]:
    """For `measured`: a call whose model is set up already (its weights then precede the memory window)."""
    return lambda: fn


def measured(make: Callable[[], Callable[[], Any]], device: str, warmup: int, repeats: int, graph: bool = False) -> dict:
    """Seconds per call of the function `make` returns (the model set up), after `warmup` calls (CUDA events on
    GPU). On CUDA, memory is measured first, in one window from before `make` to the end of the first call: the
    torch allocator's peak and NVML's figures for this process (sampled by a thread only then, so that it does not
    compete with the timed calls; TensorRT's and ONNX Runtime's allocations are invisible to the allocator). So the
    weights count on every backend, as in the paper's VRAM figures, and so does what the libraries set up for
    their first call (cuBLAS / cuDNN workspaces, kernels loaded). With `graph`, the call is captured as one CUDA
    graph inside that window, so its pool counts."""
    if device != "cuda":
        return {"times": time_runs(make(), device, warmup, repeats)}
    import torch

    from .memory import NvmlPeak

    torch.cuda.synchronize()  # the CUDA context exists before the window
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with NvmlPeak() as nvml:
        fn = make()
        call = _graphed(fn) if graph else fn
        call()
        torch.cuda.synchronize()
    memory = {"allocator_peak_mb": torch.cuda.max_memory_allocated() / 2**20, **nvml.result()}
    return {"times": time_runs(call, device, warmup, repeats), **memory}


def sd_vae_decoder(res: int, frames: int, device: str, precision: str, warmup: int, repeats: int,
                   quick: bool = False, weights: str | None = None, cuda_graph: bool = False) -> dict:
    """diffusers AutoencoderKL decoder on one video's latents [frames, 4, res/8, res/8]; with `cuda_graph`, the
    call captured once as a CUDA graph and replayed, as for the NeRV decoder."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers.utils import logging as diffusers_logging

    # .to(dtype) logs which of its modules (none) should stay fp32: a note for from_pretrained users, not ours
    diffusers_logging.set_verbosity_error()
    dtype = getattr(torch, DTYPES[precision])

    def make() -> Callable[[], Any]:
        if weights:
            vae = AutoencoderKL.from_pretrained(weights, local_files_only=True)
        else:
            vae = AutoencoderKL(**(SD_VAE_QUICK_CONFIG if quick else SD_VAE_CONFIG))
        del vae.encoder, vae.quant_conv  # the decoder only, as in the paper's table
        vae = vae.to(device, dtype).eval()
        z = torch.randn(frames, 4, res // 8, res // 8, device=device, dtype=dtype)
        return lambda: vae.decode(z).sample

    with torch.inference_mode():
        return measured(make, device, warmup, repeats, graph=cuda_graph)


def nerv_decoder(preset_name: str, res: int, frames: int, device: str, precision: str, warmup: int,
                 repeats: int, cuda_graph: bool = False) -> dict:
    """NeRV decoder (with its affine heads) rendering one video's `frames` frames from its tokens; with
    `cuda_graph`, the call captured once as a CUDA graph and replayed (torch's compiled path on GPU)."""
    import torch

    from ..models.nerv import NeRVDecoder
    from ..models.presets import preset

    cfg = preset(preset_name, res)

    def make() -> Callable[[], Any]:
        dec = NeRVDecoder(cfg).to(device, getattr(torch, DTYPES[precision])).eval()
        z = torch.randn(1, cfg.tokens, cfg.token_dim, device=device)
        t = torch.linspace(0, 1, frames, device=device)
        return lambda: dec(z, t)

    with torch.inference_mode():
        return measured(make, device, warmup, repeats, graph=cuda_graph)


def _graphed(fn: Callable[[], Any]) -> Callable[[], Any]:
    """fn captured as one CUDA graph (its inputs are fixed tensors), after a warm-up on a side stream."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def dit_forward(preset_name: str, res: int, device: str, precision: str, warmup: int, repeats: int,
                cuda_graph: bool = False) -> dict:
    """One bare DiT forward at the CFG batch of one video (2): what a sampler step costs at least. Against a
    captured sampler step, compare a captured forward (`cuda_graph`): eager it is mostly launch overhead."""
    import torch

    from ..models.dit import ImplicitDiT
    from ..models.presets import preset

    cfg = preset(preset_name, res)

    def make() -> Callable[[], Any]:
        dit = ImplicitDiT(cfg).to(device, getattr(torch, DTYPES[precision])).eval()
        x = torch.randn(2, cfg.tokens, cfg.token_dim, device=device)
        t, y = torch.tensor([500.0, 500.0], device=device), torch.tensor([0, cfg.num_classes], device=device)
        return lambda: dit(x, t, y)

    with torch.inference_mode():
        return measured(make, device, warmup, repeats, graph=cuda_graph)


def generation(source: str, backend: str, device: str, precision: str, frames: int, steps: int, sampler: str,
               guidance: float, warmup: int, repeats: int, cuda_graph: bool | None = None) -> dict:
    """Full generation of one video through the runtime Pipeline (`timed_generation`, its load inside the memory
    window) and the backend that ran it. `device`: cpu or cuda."""
    from ..runtime.pipeline import Pipeline

    opened: list[Pipeline] = []

    def load() -> Pipeline:
        opened.append(Pipeline.load(source, backend=backend, device=device, precision=precision, cuda_graph=cuda_graph))
        return opened[0]

    result = timed_generation(load, device, frames, steps, sampler, guidance, warmup, repeats)
    pipe = opened[0]
    captured = any(m.graphs_captured or m.backend.cuda_graph for m in pipe.models.values())  # what ran, not what may
    return {**result, "backend": pipe.backend_name + (" +cuda-graph" if captured else ""), "precision": pipe.precision}


def timed_generation(open_pipe: Callable[[], Any], device: str, frames: int, steps: int, sampler: str, guidance: float,
                     warmup: int, repeats: int) -> dict:
    """Sampling and decoding of one video by the Pipeline `open_pipe` gives, timed apart (wall clock after a device
    sync each): `times` are their sums (CUDA events on GPU), `sample_times` / `decode_times` the parts; memory as in
    `measured`, from before `open_pipe`."""
    parts: dict[str, list[float]] = {"sample_times": [], "decode_times": []}

    def make() -> Callable[[], None]:
        pipe = open_pipe()

        def run() -> None:
            t0 = time.perf_counter()
            tokens = pipe.sample_tokens(steps=steps, sampler=sampler, guidance=guidance, seed=0)
            pipe.synchronize()
            t1 = time.perf_counter()
            pipe.decode(tokens, frames)
            pipe.synchronize()
            parts["sample_times"].append(t1 - t0)
            parts["decode_times"].append(time.perf_counter() - t1)
        return run

    result = measured(make, device, warmup, repeats)
    return {**result, **{k: v[-repeats:] for k, v in parts.items()}}  # the timed calls: not the warm-up / memory ones
