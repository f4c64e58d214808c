"""Diffusion math over weight tokens: schedules, samplers, training weights.

`schedule` and `samplers` are numpy-only (the ONNX Runtime path runs them without torch); their
step functions are plain arithmetic and slicing, so they run unchanged on numpy arrays and on
torch tensors, and a torch loop built from them can be captured in one CUDA graph.
"""
from .samplers import SAMPLERS, SamplerTable, cfg_combine, make_sampler, sampler_step
from .schedule import (
    NUM_TIMESTEPS,
    alphas_cumprod,
    linear_betas,
    min_snr_weights,
    q_sample,
)

__all__ = [
    "NUM_TIMESTEPS", "SAMPLERS", "SamplerTable", "alphas_cumprod", "cfg_combine", "linear_betas",
    "make_sampler", "min_snr_weights", "q_sample", "sampler_step",
]
