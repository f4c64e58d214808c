"""Parameter counts and MACs of a config, computed on the meta device (instant even for L)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .dit import ImplicitDiT
from .hyper_ae import NeRVVAE
from .presets import ModelConfig

MAC_FRAMES = 16  # decoder cost is reported per 16-frame video, like the paper's table


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(fn, *args) -> int:
    """Multiply-accumulates of fn(*args) by torch's flop counter (MAC = FLOP / 2)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops() // 2


def describe(cfg: ModelConfig, with_dit: bool = True) -> dict:
    """tokens, token_dim, params per module and MACs (decoder per 16-frame video, DiT per forward at batch 1).
    with_dit=False describes a VAE alone (a `train vae` or `train autodecode` checkpoint): no DiT entries."""
    with torch.device("meta"):
        vae = NeRVVAE(cfg)
        z = torch.empty(1, cfg.tokens, cfg.token_dim)
        frame_t = torch.empty(MAC_FRAMES)
        params = {"encoder": count_params(vae.encoder), "decoder": count_params(vae.decoder)}
        with torch.no_grad():
            macs = {"decoder_16f": count_macs(vae.decoder, z, frame_t)}
            if with_dit:
                dit = ImplicitDiT(cfg)
                t, y = torch.empty(1), torch.zeros(1, dtype=torch.long)
                params["dit"] = count_params(dit)
                macs["dit_step"] = count_macs(dit, z, t, y)
    return {"preset": cfg.preset, "res": cfg.res, "tokens": cfg.tokens, "token_dim": cfg.token_dim,
            "params": params, "macs": macs}
