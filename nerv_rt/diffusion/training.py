"""Training-side diffusion helpers (torch): scheduled sampling."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def scheduled_sampling_prob(step: int, total_steps: int, max_prob: float = 0.5, ramp: float = 0.3) -> float:
    """Probability of using the model's own estimate: linear 0 -> max_prob over the first `ramp` of training."""
    ramp_steps = max(1, int(ramp * total_steps))
    return max_prob * min(1.0, step / ramp_steps)


def scheduled_sampling_inputs(model: nn.Module, x0: Tensor, t: Tensor, noise: Tensor, y: Tensor, abar: Tensor,
                              use_own: Tensor) -> tuple[Tensor, Tensor]:
    """Noised inputs x_t and eps targets, where samples with use_own=True see the model's own
    detached one-step-denoised estimate instead of the forward-noised x_t.

    For those samples: x_{t+1} = q(x0, t+1), eps' = model(x_{t+1}), and x'_t is the deterministic
    (DDIM) step t+1 -> t; the target is the eps that maps x0 to x'_t, so the model learns to
    denoise its own drift back to the data.  x0, noise (B, N, d); t, y, use_own (B,).
    """
    a_t = abar[t].view(-1, 1, 1)
    x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * noise
    if not bool(use_own.any()):
        return x_t, noise
    t_next = (t + 1).clamp(max=abar.shape[0] - 1)
    a_n = abar[t_next].view(-1, 1, 1)
    x_next = a_n.sqrt() * x0 + (1 - a_n).sqrt() * noise
    with torch.no_grad():
        eps_hat = model(x_next, t_next.float(), y)
        x0_hat = (x_next - (1 - a_n).sqrt() * eps_hat) / a_n.sqrt()
        x_own = a_t.sqrt() * x0_hat + (1 - a_t).sqrt() * eps_hat
    eps_own = (x_own - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    mask = use_own.view(-1, 1, 1)
    return torch.where(mask, x_own, x_t), torch.where(mask, eps_own, noise)
