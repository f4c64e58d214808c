"""The three runtime graphs as modules with the exported I/O signature (see export/specs.py).

The ONNX exporter traces these, and the torch backends run them, so both see the same function.
Inputs and outputs are fp32 whatever the weights' dtype: a module cast to fp16 / bf16 exports a
precision-typed graph with fp32 I/O (keep_io_types), its sensitive ops kept in fp32 by the models.
"""
from __future__ import annotations

import torch
from torch import nn


class DiTGraph(nn.Module):
    """(x_t (B, N, d_z), t (B,) float, y (B,) int64) -> eps (B, N, d_z)."""

    def __init__(self, dit: nn.Module):
        super().__init__()
        self.dit = dit

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dit(x_t, t, y).float()


class DecoderGraph(nn.Module):
    """One video's tokens (1, N, d_z) + frame times (F,) -> frames (F, 3, H, W)."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: torch.Tensor, frame_t: torch.Tensor) -> torch.Tensor:
        return self.decoder(tokens, frame_t)[0].float()


class EncoderGraph(nn.Module):
    """Video (1, T, 3, H, W) in [-1, 1] -> posterior-mean tokens (1, N, d_z)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encoder(video)[0].float()


def graph_modules(vae: nn.Module, dit: nn.Module | None) -> dict[str, nn.Module]:
    """name -> module for every graph the models can provide (no 'dit' without a DiT)."""
    modules = {"decoder": DecoderGraph(vae.decoder).eval(), "encoder": EncoderGraph(vae.encoder).eval()}
    if dit is not None:
        modules["dit"] = DiTGraph(dit).eval()
    return modules
