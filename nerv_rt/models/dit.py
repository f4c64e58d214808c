"""Implicit DiT: denoises weight tokens (facebookresearch/DiT with adaLN-Zero, no patching).

Tokens have identities (each feeds fixed kernel rows), so they get a learned position embedding;
there is nothing temporal or spatial here: the DiT never sees pixels.

The DiT always returns eps. With `prediction='v'` (the default for new models) its last layer predicts
v = sqrt(abar) eps - sqrt(1 - abar) x0 and forward() turns that into eps = sqrt(1 - abar) x_t + sqrt(abar) v.
Why: an eps network's x0 estimate is (x_t - sqrt(1 - abar) eps) / sqrt(abar), so at t = 999 its error is
amplified 1 / sqrt(abar) = 160x; a v network's x0 estimate is sqrt(abar) x_t - sqrt(1 - abar) v, no larger than
its own error: a short eps run diverged in sampling where a v run did not (docs/default-model.md, "Then the DiT was the limit").
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..diffusion.schedule import alphas_cumprod, linear_betas
from .embeddings import timestep_embedding
from .presets import ModelConfig
from .transformer import Attention, LayerNorm32, Mlp


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: Tensor) -> Tensor:
        emb = timestep_embedding(t, self.freq_dim)  # sin / cos in fp32
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning: six shift/scale/gate chunks."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, heads)
        self.norm2 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        return x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.norm = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class ImplicitDiT(nn.Module):
    """(x_t (B, N, d_z), t (B,) float timesteps, y (B,) int64 labels) -> eps (B, N, d_z) (fp32 from a v model).

    Label `num_classes` is the null class used for classifier-free guidance.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.dit
        self.num_classes = cfg.num_classes
        self.predicts_v = d.prediction == "v"
        abar = torch.tensor(alphas_cumprod(linear_betas()), dtype=torch.float32)  # on the default device (meta too)
        self.register_buffer("sqrt_abar", abar.sqrt(), persistent=False)  # per timestep, for v -> eps
        self.register_buffer("sqrt_one_minus_abar", (1 - abar).sqrt(), persistent=False)
        self.x_embedder = nn.Linear(cfg.token_dim, d.hidden)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.tokens, d.hidden))
        self.t_embedder = TimestepEmbedder(d.hidden)
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, d.hidden)
        self.blocks = nn.ModuleList(DiTBlock(d.hidden, d.heads, d.mlp_ratio) for _ in range(d.depth))
        self.final_layer = FinalLayer(d.hidden, cfg.token_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(_basic_init)
        # Token identities: small random position embedding, learned.
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.y_embedder.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity ...
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        # ... and the output starts at exactly zero.
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        h = self.x_embedder(x.to(self.pos_embed.dtype)) + self.pos_embed  # (B, N, D)
        c = self.t_embedder(t) + self.y_embedder(y)  # (B, D)
        for block in self.blocks:
            h = block(h, c)  # (B, N, D)
        out = self.final_layer(h, c)  # (B, N, d_z): eps or v
        if not self.predicts_v:
            return out
        i = t.round().clamp(0, self.sqrt_abar.shape[0] - 1).long()  # the samplers visit integer timesteps
        # fp32 in and out whatever the weights' dtype: near t = 999 eps ~ x_t, and rounding it to bf16 would
        # lose the x0 precision v buys
        return self.sqrt_one_minus_abar[i].view(-1, 1, 1) * x.float() + self.sqrt_abar[i].view(-1, 1, 1) * out.float()

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Device moves apply to the v -> eps tables, dtype casts (.half(), .to(bf16)) do not: they stay fp32."""
        super()._apply(fn, recurse)
        self.sqrt_abar, self.sqrt_one_minus_abar = self.sqrt_abar.float(), self.sqrt_one_minus_abar.float()
        return self
