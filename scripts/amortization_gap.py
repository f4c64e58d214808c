"""How much reconstruction quality the encoder leaves on the table (the amortization gap).

For each clip: encode it, then freeze the whole VAE and run Adam on the weight tokens alone, so the
decoder gets the best tokens it can use. The PSNR gain over the encoder's tokens is what a better
encoder could win without changing the decoder or the token budget.

    python scripts/amortization_gap.py heldout --model default --res 128 --per-class 1 --steps 200
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nerv_rt.checkpoint import build_models
from nerv_rt.data.video_folder import list_videos
from nerv_rt.metrics import psnr
from nerv_rt.runtime.frames import frame_times
from nerv_rt.runtime.sources import resolve
from nerv_rt.runtime.video_io import read_video


@torch.no_grad()
def clip_psnr(vae, tokens: torch.Tensor, times: torch.Tensor, clip: torch.Tensor) -> float:
    """PSNR of the whole clip (B = 1) rendered from `tokens`."""
    return psnr(vae.decoder(tokens, times), clip).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", default="default")
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--per-class", type=int, default=1, help="clips per class folder")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-2)
    args = ap.parse_args()
    source = next(s for s in resolve(args.model) if s.config.res == args.res)
    vae, _ = build_models(source.checkpoint())
    vae = vae.float().requires_grad_(False)
    cfg = vae.cfg
    times = torch.from_numpy(frame_times(cfg.frames))
    by_class: dict[str, list[Path]] = defaultdict(list)
    for path in list_videos(args.data):
        if len(by_class[path.parent.name]) < args.per_class:
            by_class[path.parent.name].append(path)
    gains = []
    for name, paths in sorted(by_class.items()):
        for path in paths:
            clip = torch.from_numpy(read_video(path, 0, cfg.frames, cfg.res)).permute(0, 3, 1, 2).float()
            clip = clip[None] / 127.5 - 1
            with torch.no_grad():
                tokens = vae.encoder(clip)[0]
            tokens.requires_grad_(True)
            opt = torch.optim.Adam([tokens], lr=args.lr)
            before = clip_psnr(vae, tokens, times, clip)
            for _ in range(args.steps):
                loss = F.mse_loss(vae.decoder(tokens, times), clip)
                opt.zero_grad()
                loss.backward()
                opt.step()
            after = clip_psnr(vae, tokens, times, clip)
            gains.append(after - before)
            print(f"{name:14s} {path.name}: encoder {before:5.2f} dB -> tokens fitted {after:5.2f} dB", flush=True)
    print(f"mean gain {np.mean(gains):.2f} dB over {len(gains)} clips ({args.steps} Adam steps on the tokens only)")


if __name__ == "__main__":
    main()
