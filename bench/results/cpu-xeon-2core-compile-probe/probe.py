"""torch.compile against eager for the recipe's training steps on this CPU (bf16 autocast, as scripts/train_default.sh
runs them): forward + backward + AdamW of the tiny preset's DiT (batch 64), its decoder (an autodecoder step: 8 videos x
4 frames at 128^2, 4 x 4 at 256^2) and its encoder (8 clips). Eager and compiled steps alternate, so that the host's
load falls on both; the ratio is compiled / eager median step time over the timed steps."""
import argparse
import copy
import json
import time

import torch

from nerv_rt.models.dit import ImplicitDiT
from nerv_rt.models.hyper_ae import NeRVVAE
from nerv_rt.models.presets import preset
from nerv_rt.runtime.frames import frame_times
from nerv_rt.train.common import autocast
from nerv_rt.train.losses import reconstruction_loss


def step_fn(which: str, res: int):
    cfg = preset("tiny", res, num_classes=8)
    torch.manual_seed(0)
    if which == "dit":
        model, b = ImplicitDiT(cfg), 64
        x, t, y = torch.randn(b, cfg.tokens, cfg.token_dim), torch.randint(1000, (b,)).float(), torch.randint(9, (b,))
        return model, lambda m: (m(x, t, y).float() - x).pow(2).mean()
    vae = NeRVVAE(cfg)
    b = 8 if res == 128 else 4
    if which == "decoder":
        z, times = torch.randn(b, cfg.tokens, cfg.token_dim), torch.from_numpy(frame_times(16))[:4].float()
        target = torch.rand(b, 4, 3, res, res) * 2 - 1
        return vae.decoder, lambda m: reconstruction_loss(m(z, times), target, 1.0)[0]
    video = torch.rand(b, 16, 3, res, res) * 2 - 1
    return vae.encoder, lambda m: m(video)[0].float().pow(2).mean()


def timed_step(model, loss_fn, opt) -> float:
    t0 = time.perf_counter()
    with autocast(torch.device("cpu"), "bf16"):
        loss = loss_fn(model)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    for which, res in (("dit", 128), ("decoder", 128), ("decoder", 256), ("encoder", 128)):
        eager, loss_fn = step_fn(which, res)
        compiled_model = copy.deepcopy(eager)
        runs = {"eager": (eager, torch.optim.AdamW(eager.parameters())),
                "compiled": (torch.compile(compiled_model), torch.optim.AdamW(compiled_model.parameters()))}
        t0 = time.perf_counter()
        for _ in range(3):
            timed_step(runs["compiled"][0], loss_fn, runs["compiled"][1])
        compile_s = time.perf_counter() - t0
        for _ in range(3):
            timed_step(runs["eager"][0], loss_fn, runs["eager"][1])
        times = {"eager": [], "compiled": []}
        for _ in range(args.steps):
            for name, (model, opt) in runs.items():
                times[name].append(timed_step(model, loss_fn, opt))
        med = {k: sorted(v)[len(v) // 2] * 1e3 for k, v in times.items()}
        print(json.dumps({"step": which, "res": res, "eager_ms": round(med["eager"], 1),
                          "compiled_ms": round(med["compiled"], 1),
                          "compiled_over_eager": round(med["compiled"] / med["eager"], 2),
                          "first_3_compiled_steps_s": round(compile_s)}), flush=True)


if __name__ == "__main__":
    main()
