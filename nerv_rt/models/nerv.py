"""Generative NeRV decoder: weight tokens -> conv kernels -> frames at any time t in [0, 1].

Every 3x3 conv layer (the stem and one per upsampling block) takes part of its kernels from the
video's tokens through a dedicated affine head (multi-head affine, channel-wise parameterization,
StyleGAN demodulation); upsampling layers and to-RGB side outputs are shared across videos.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import nerv_positional_encoding
from .presets import DecoderConfig, ModelConfig
from .transformer import under_cpu_autocast

KERNEL = 3


# --------------------------------------------------------------------------------------------
# Tokens -> kernels
# --------------------------------------------------------------------------------------------

def demodulate(kernels: Tensor, eps: float = 1e-8) -> Tensor:
    """StyleGAN2 demodulation to unit RMS per output channel: K / sqrt(mean(K^2)).  (..., C_out, fan_in) -> same

    StyleGAN's unit L2 norm is this times 1 / sqrt(fan_in), which `DynamicConv` folds into its gain. The
    mean, unlike the sum of squares (~8.5e3 at fan-in 288 on the tiny model, past fp16's 65504 at the
    S / B / L fan-ins), stays in range; the op runs in fp32 whatever the kernels' dtype."""
    k = kernels.float()
    return (k * torch.rsqrt(k.pow(2).mean(dim=-1, keepdim=True) + eps)).to(kernels.dtype)


def kernel_rows(param: str, dyn_frac: float, c_out: int) -> int:
    """How many kernel rows a layer's affine head makes (see `DynamicConv`)."""
    if param == "fmm":
        return c_out
    rows = max(1, round(dyn_frac * c_out))
    if param == "repeat":
        while c_out % rows:  # tiled rows must fill the layer exactly
            rows += 1
    return rows


def token_groups(reuse: str, n_tokens: int, rows: list[int]) -> list[list[int] | None]:
    """Which tokens each layer's head reads (None = all of them).

    multihead: every layer mixes all tokens through its own head (the paper's default);
    none: tokens are split into disjoint groups, one per layer (no reuse across layers);
    direct: no mixing, each kernel row is one token (dealt out in order, wrapping around).
    """
    if reuse == "multihead":
        return [None] * len(rows)
    if reuse == "none":
        return [g.tolist() for g in np.array_split(np.arange(n_tokens), len(rows))]
    offsets = np.cumsum([0] + rows[:-1])
    return [[(int(o) + j) % n_tokens for j in range(r)] for o, r in zip(offsets, rows)]


class AffineHead(nn.Module):
    """One layer's head: K = reshape(Mix(z) @ Proj) + b.   z (B, N, d_z) -> (B, rows, fan_in)"""

    def __init__(self, tokens: list[int] | None, n_tokens: int, rows: int, d_z: int, fan_in: int,
                 direct: bool):
        super().__init__()
        self.register_buffer("token_index", None if tokens is None else torch.tensor(tokens), persistent=False)
        n_in = n_tokens if tokens is None else len(tokens)
        self.mix = None if direct else nn.Linear(n_in, rows, bias=False)  # over the token axis
        self.proj = nn.Linear(d_z, fan_in, bias=False)
        self.base = nn.Parameter(torch.randn(rows, fan_in) / math.sqrt(fan_in))

    def forward(self, z: Tensor) -> Tensor:
        if self.token_index is not None:
            z = z[:, self.token_index]  # (B, n_in, d_z)
        if self.mix is not None:
            z = self.mix(z.transpose(1, 2)).transpose(1, 2)  # (B, rows, d_z)
        return self.proj(z) + self.base  # (B, rows, fan_in)


class DynamicConv(nn.Module):
    """3x3 conv whose kernels depend on the video's tokens.

    param='channel': the head makes the first `rows` output channels (demodulated, times a gain),
        the other channels use shared kernels;
    param='repeat': the head's rows are tiled over all output channels (no shared kernels);
    param='fmm': every kernel is a shared kernel modulated elementwise by (1 + head), then demodulated.
    """

    def __init__(self, c_in: int, c_out: int, dec: DecoderConfig, tokens: list[int] | None,
                 n_tokens: int, d_z: int):
        super().__init__()
        self.c_in, self.c_out, self.param = c_in, c_out, dec.param
        fan_in = c_in * KERNEL * KERNEL
        self.rows = kernel_rows(dec.param, dec.dyn_frac, c_out)
        self.head = AffineHead(tokens, n_tokens, self.rows, d_z, fan_in, direct=dec.reuse == "direct")
        # A GELU follows every dynamic conv: unit-norm (demodulated) rows times sqrt(2) keep the
        # activation scale through the depth (He init), for token-made and shared kernels alike.
        self.gain = nn.Parameter(torch.full((self.rows, 1), math.sqrt(2.0)))
        self.rms_to_norm = 1.0 / math.sqrt(fan_in)  # `demodulate` gives unit RMS; the gain acts on unit norm
        n_shared = {"channel": c_out - self.rows, "repeat": 0, "fmm": c_out}[dec.param]
        self.shared = nn.Parameter(torch.randn(n_shared, fan_in) * math.sqrt(2.0 / fan_in))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def kernels(self, z: Tensor) -> Tensor:
        """z (B, N, d_z) -> conv weights (B, C_out, C_in, 3, 3)."""
        B = z.shape[0]
        h = self.head(z)  # (B, rows, fan_in)
        gain = self.gain * self.rms_to_norm
        if self.param == "channel":
            w = torch.cat([demodulate(h) * gain, self.shared.expand(B, -1, -1)], dim=1)
        elif self.param == "repeat":
            w = (demodulate(h) * gain).repeat(1, self.c_out // self.rows, 1)
        else:
            w = demodulate(self.shared * (1 + h)) * gain
        return w.reshape(B, self.c_out, self.c_in, KERNEL, KERNEL)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        """x (F, B*C_in, h, w): frames are the conv batch, videos the channel groups -> (F, B*C_out, h, w)."""
        w = self.kernels(z)
        B = w.shape[0]
        return F.conv2d(x, w.reshape(B * self.c_out, self.c_in, KERNEL, KERNEL), self.bias.repeat(B),
                        padding=KERNEL // 2, groups=B)


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------

def make_upsample(mode: str, c_in: int, c_out: int) -> nn.Module:
    """2x upsampling layer; the three ablation variants cost the same MACs.

    Each output pixel is a linear map of c_in inputs: weights N(0, 1/c_in) keep the activation scale
    (PyTorch's default init would shrink it ~3x per block and starve the fine blocks of gradient)."""
    if mode == "transposed":
        layer = nn.ConvTranspose2d(c_in, c_out, kernel_size=2, stride=2)
    elif mode == "pixelshuffle":
        layer = nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 1), nn.PixelShuffle(2))
    else:
        layer = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(c_in, c_out, 1))
    for m in layer.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, std=1.0 / math.sqrt(c_in))
            nn.init.zeros_(m.bias)
    return layer


def is_2x2_upsample(layer: nn.Module) -> bool:
    """A transposed conv of kernel 2, stride 2 and no padding (make_upsample's): one 1x1 map per output sub-pixel."""
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == layer.stride == (2, 2)
            and layer.padding == layer.output_padding == (0, 0) and layer.dilation == (1, 1) and layer.groups == 1)


def transposed_as_pixel_shuffle(layer: nn.ConvTranspose2d, x: Tensor, groups: int) -> Tensor:
    """A 2x2 stride-2 transposed conv (is_2x2_upsample) as what it is, a 1x1 conv to each pixel's 4 sub-pixels and a
    pixel shuffle, on the grouped layout. Under CPU bf16 autocast oneDNN's grouped transposed conv is the slow op
    (16-channel groups at 256^2: 320 ms forward + backward, this way 130, in fp32 94); in the whole decoder step this
    way beat running that op in fp32 (0.13 against 0.20 s at 128^2, 0.24 against 0.31 s at 256^2)."""
    c_in, c_out = layer.weight.shape[:2]
    w = layer.weight.permute(1, 2, 3, 0).reshape(c_out * 4, c_in, 1, 1)  # row (o, i, j): output o at sub-pixel (i, j)
    return F.pixel_shuffle(F.conv2d(x, w.repeat(groups, 1, 1, 1), layer.bias.repeat_interleave(4).repeat(groups),
                                    groups=groups), 2)


def apply_shared(layer: nn.Module, x: Tensor, groups: int) -> Tensor:
    """Run a shared (not token-made) layer on the grouped layout (F, groups*C, h, w): every
    video's channel group gets the same weights."""
    if groups == 1:
        return layer(x)
    if isinstance(layer, nn.Sequential):
        for sub in layer:
            x = apply_shared(sub, x, groups)
        return x
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        if under_cpu_autocast(x) and is_2x2_upsample(layer):
            return transposed_as_pixel_shuffle(layer, x, groups)
        conv = F.conv_transpose2d if isinstance(layer, nn.ConvTranspose2d) else F.conv2d
        return conv(x, layer.weight.repeat(groups, 1, 1, 1), layer.bias.repeat(groups), layer.stride,
                    layer.padding, groups=groups)
    return layer(x)  # parameter-free: PixelShuffle and Upsample keep channel groups intact


def upsample_rgb(rgb: Tensor, factor: int, mode: str) -> Tensor:
    return F.interpolate(rgb, scale_factor=factor, mode=mode, **({} if mode == "nearest" else {"align_corners": False}))


class NeRVDecoder(nn.Module):
    """(tokens z (B, N, d_z), frame times (F,)) -> frames (B, F, 3, res, res) in about [-1, 1]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dec = cfg.decoder
        self.cfg = cfg
        widths = list(dec.widths)
        c_ins = [dec.pe_channels] + widths[1:]  # each block's conv reads its upsampled features
        rows = [kernel_rows(dec.param, dec.dyn_frac, c) for c in widths]
        groups = token_groups(dec.reuse, cfg.tokens, rows)
        self.convs = nn.ModuleList(DynamicConv(ci, co, dec, g, cfg.tokens, cfg.token_dim)
                                   for ci, co, g in zip(c_ins, widths, groups))
        self.ups = nn.ModuleList(make_upsample(dec.upsample, a, b) for a, b in zip(widths[:-1], widths[1:]))
        side_widths = widths[-1:] if dec.side == "vanilla" else widths
        self.to_rgb = nn.ModuleList(nn.Conv2d(w, 3, 1) for w in side_widths)

    def forward(self, z: Tensor, frame_t: Tensor) -> Tensor:
        dec, B, n_frames = self.cfg.decoder, z.shape[0], frame_t.shape[0]
        z = z.to(self.to_rgb[0].weight.dtype)  # fp32 tokens into a model cast to fp16 / bf16
        # Layout (F, B*C, h, w): frames are the conv batch and each video is one channel group, so
        # per-video kernels are one grouped conv; for B = 1 (the exported graph) it is a plain conv.
        # sin / cos of the encoding in fp32 whatever the weights' dtype, then the convs' dtype
        x = nerv_positional_encoding(frame_t.float(), dec.grid, dec.pe_freqs).to(self.to_rgb[0].weight.dtype)  # (F, 6L, g, g)
        if B > 1:
            x = x.repeat(1, B, 1, 1)  # (F, B*6L, g, g)
            if x.device.type == "cpu" and torch.backends.mkldnn.is_available():
                # oneDNN runs these grouped convs 1.5-2x faster channels-last (not B = 1's); only measured with it
                x = x.contiguous(memory_format=torch.channels_last)
        x = F.gelu(self.convs[0](x, z))
        sides = [x]
        for up, conv in zip(self.ups, self.convs[1:]):
            x = F.gelu(conv(apply_shared(up, x, B), z))  # (F, B*C, 2h, 2w)
            sides.append(x)
        rgb = self._combine_sides(sides, B)  # (F, B*3, res, res)
        return rgb.reshape(n_frames, B, 3, self.cfg.res, self.cfg.res).transpose(0, 1)

    def _combine_sides(self, sides: list[Tensor], B: int) -> Tensor:
        """residual: each block's RGB refines the 2x-upsampled RGB of the block before;
        vanilla: only the last block's RGB; skips: every block's RGB straight to full size, summed."""
        side = self.cfg.decoder.side
        rgbs = [apply_shared(to_rgb, s, B) for to_rgb, s in zip(self.to_rgb, sides[-len(self.to_rgb):])]
        if side == "vanilla":
            return rgbs[0]
        n = len(rgbs)
        if side == "skips":
            return sum(upsample_rgb(r, 2 ** (n - 1 - i), "nearest") if i < n - 1 else r for i, r in enumerate(rgbs))
        rgb = rgbs[0]
        for r in rgbs[1:]:
            rgb = upsample_rgb(rgb, 2, "bilinear") + r
        return rgb
