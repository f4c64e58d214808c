"""The measured work, one function per case; each runs in a fresh process (see memory.run_in_child).

A case builds its model and inputs, warms up, then times `repeats` runs: CUDA events on GPU,
perf_counter on CPU. Weights are random: latency and memory do not depend on their values.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
    import numpy as np

    rng = np.random.default_rng(0)
    return {"decoder": {"tokens": asarray(rng.standard_normal((1, cfg.tokens, cfg.token_dim), dtype=np.float32)),
                        "frame_t": asarray(np.linspace(0, 1, 16, dtype=np.float32))},
            "dit": {"x_t": asarray(rng.standard_normal((2, cfg.tokens, cfg.token_dim), dtype=np.float32)),
                    "t": asarray(np.array([500.0, 500.0], np.float32)),
                    "y": asarray(np.array([0, cfg.num_classes], np.int64))}}


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


def _gpu_memory() -> dict[str, float]:
    import torch

    free, total = torch.cuda.mem_get_info()
    return {"allocator_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
            "driver_used_mb": (total - free) / 2**20}


def sd_vae_decoder(res: int, frames: int, device: str, precision: str, warmup: int, repeats: int,
                   quick: bool = False, weights: str | None = None) -> dict:
    """diffusers AutoencoderKL decoder on one video's latents [frames, 4, res/8, res/8]."""
    import torch
    from diffusers import AutoencoderKL

    dtype = getattr(torch, DTYPES[precision])
    if weights:
        vae = AutoencoderKL.from_pretrained(weights, local_files_only=True)
    else:
        vae = AutoencoderKL(**(SD_VAE_QUICK_CONFIG if quick else SD_VAE_CONFIG))
    del vae.encoder, vae.quant_conv  # the decoder only, as in the paper's table
    vae = vae.to(device, dtype).eval()
    z = torch.randn(frames, 4, res // 8, res // 8, device=device, dtype=dtype)
    with torch.inference_mode():
        times = time_runs(lambda: vae.decode(z).sample, device, warmup, repeats)
    return {"times": times, **(_gpu_memory() if device == "cuda" else {})}


def nerv_decoder(preset_name: str, res: int, frames: int, device: str, precision: str, warmup: int,
                 repeats: int) -> dict:
    """NeRV decoder (with its affine heads) rendering one video's `frames` frames from its tokens."""
    import torch

    from ..models.nerv import NeRVDecoder
    from ..models.presets import preset

    dtype = getattr(torch, DTYPES[precision])
    cfg = preset(preset_name, res)
    dec = NeRVDecoder(cfg).to(device, dtype).eval()
    z = torch.randn(1, cfg.tokens, cfg.token_dim, device=device, dtype=dtype)
    t = torch.linspace(0, 1, frames, device=device, dtype=dtype)
    with torch.inference_mode():
        times = time_runs(lambda: dec(z, t), device, warmup, repeats)
    return {"times": times, **(_gpu_memory() if device == "cuda" else {})}


def generation(source: str, backend: str, device: str, precision: str, frames: int, steps: int, sampler: str,
               guidance: float, warmup: int, repeats: int, cuda_graph: bool | None = None) -> dict:
    """Full generation of one video (sampling loop + decode) through the runtime Pipeline."""
    from ..runtime.pipeline import Pipeline

    pipe = Pipeline.load(source, backend=backend, device=device, precision=precision, cuda_graph=cuda_graph)

    def run():
        pipe.generate(frames=frames, steps=steps, sampler=sampler, guidance=guidance, seed=0)
        pipe.synchronize()

    times = time_runs(run, pipe.device, warmup, repeats)
    captured = any(m.backend.can_capture or m.backend.cuda_graph for m in pipe.models.values())
    return {"times": times, "backend": pipe.backend_name + (" +cuda-graph" if captured else ""),
            **(_gpu_memory() if pipe.device == "cuda" else {})}
