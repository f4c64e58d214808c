"""NeRV-VAE: a ViT hypernetwork encodes a clip into Gaussian weight tokens; the NeRV decoder renders them."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .embeddings import sincos_embedding
from .nerv import NeRVDecoder
from .presets import ModelConfig
from .transformer import Block, LayerNorm32

LOGVAR_RANGE = (-30.0, 20.0)
INIT_LOGVAR = -5.0


def patchify(video: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """(B, T, 3, H, W) -> (B, T/pt * H/ph * W/pw, 3*pt*ph*pw) tubelets, row-major over (t, y, x)."""
    B, T, C, H, W = video.shape
    pt, ph, pw = patch
    x = video.reshape(B, T // pt, pt, C, H // ph, ph, W // pw, pw)
    x = x.permute(0, 1, 4, 6, 2, 3, 5, 7)  # (B, T', H', W', pt, C, ph, pw)
    return x.reshape(B, (T // pt) * (H // ph) * (W // pw), pt * C * ph * pw)


class HyperEncoder(nn.Module):
    """Video (B, T, 3, H, W) in [-1, 1] -> posterior (mean, logvar), each (B, N, d_z).

    A ViT over [tubelet patches ; N learned query tokens]; only the query outputs are kept and
    go through a two-layer FC bottleneck to a diagonal Gaussian.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        enc = cfg.encoder
        pt, ph, pw = enc.patch
        self.patch = enc.patch
        self.n_tokens = cfg.tokens
        self.patch_embed = nn.Linear(3 * pt * ph * pw, enc.dim)
        lattice = (cfg.frames // pt, cfg.res // ph, cfg.res // pw)
        self.register_buffer("pos_embed", sincos_embedding(lattice, enc.dim), persistent=False)
        self.queries = nn.Parameter(torch.randn(1, cfg.tokens, enc.dim) * 0.02)
        self.blocks = nn.ModuleList(Block(enc.dim, enc.heads, enc.mlp_ratio) for _ in range(enc.depth))
        self.norm = LayerNorm32(enc.dim)
        self.bottleneck = nn.Sequential(nn.Linear(enc.dim, enc.dim), nn.GELU(), nn.Linear(enc.dim, 2 * cfg.token_dim))
        # Start nearly deterministic (std ~0.08): with unit posterior noise at init the decoder learns
        # to ignore the tokens and training stalls at the clip's mean colour; the KL term then sets the
        # noise level the latents can afford.
        nn.init.constant_(self.bottleneck[-1].bias[cfg.token_dim:], INIT_LOGVAR)

    def forward(self, video: Tensor) -> tuple[Tensor, Tensor]:
        x = self.patch_embed(patchify(video.to(self.queries.dtype), self.patch)) + self.pos_embed  # (B, P, D)
        x = torch.cat([x, self.queries.expand(x.shape[0], -1, -1)], dim=1)  # (B, P+N, D)
        for block in self.blocks:
            x = block(x)
        q = self.norm(x[:, -self.n_tokens:])  # (B, N, D): keep only the query outputs
        mean, logvar = self.bottleneck(q).chunk(2, dim=-1)  # (B, N, d_z) each
        return mean, logvar.clamp(*LOGVAR_RANGE)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), summed over tokens, averaged over the batch."""
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(1).mean()


class NeRVVAE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = HyperEncoder(cfg)
        self.decoder = NeRVDecoder(cfg)

    def forward(self, video: Tensor, frame_t: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruct `video` at `frame_t` from z = mean + noise * std (noise None: the mean).

        Returns (frames (B, F, 3, H, W), mean, logvar). Noise is an argument, not drawn here, so
        that data-parallel ranks can share one global draw.
        """
        mean, logvar = self.encoder(video)
        z = mean if noise is None else mean + noise * (0.5 * logvar).exp()
        return self.decoder(z, frame_t), mean, logvar
