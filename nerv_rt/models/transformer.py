"""Transformer pieces shared by the hypernetwork encoder and the DiT.

Norms and attention compute in fp32 whatever the weights' dtype (fp16 LayerNorm after attention
overflows; see shared/reference/tensorrt.md section 6): a model cast to fp16 / bf16 exports graphs that
keep exactly these ops in fp32.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def under_cpu_autocast(x: Tensor) -> bool:
    """Whether x is computed under CPU autocast (`train ... --precision bf16` on the CPU)."""
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def cpu_autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """CPU autocast off inside, when x is under it. CPU autocast casts attention's fp32 inputs back to bf16, whose CPU
    backward is 8x slower than fp32's (the DiT's bf16 step gained nothing); CUDA's bf16 flash attention is kept."""
    return torch.autocast("cpu", enabled=False) if under_cpu_autocast(x) else contextlib.nullcontext()


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in fp32, the result in the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.float().unbind(0)  # attention (softmax) in fp32: a tiny share of the FLOPs at these lengths
        with cpu_autocast_off(x):
            x = F.scaled_dot_product_attention(q, k, v).to(qkv.dtype)  # (B, heads, T, C/heads)
        return self.proj(x.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: float):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = LayerNorm32(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = LayerNorm32(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
