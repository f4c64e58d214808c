"""Model configurations and the tiny / S / B / L presets (torch-free: the ORT runtime reads them).

A `ModelConfig` describes one NeRV-Diffusion model at one resolution: the hypernetwork encoder,
the NeRV decoder with its affine heads, and the implicit DiT. Configs round-trip through JSON
(`to_dict` / `from_dict`) and are stored in checkpoints and export manifests.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import ConfigError

RESOLUTIONS = (128, 256)
PARAM_MODES = ("channel", "repeat", "fmm")
PREDICTIONS = ("eps", "v")
REUSE_MODES = ("multihead", "direct", "none")
UPSAMPLE_MODES = ("transposed", "pixelshuffle", "bilinear")
SIDE_MODES = ("residual", "vanilla", "skips")


@dataclass(frozen=True)
class EncoderConfig:
    dim: int = 128
    depth: int = 4
    heads: int = 4
    patch: tuple[int, int, int] = (4, 8, 8)  # tubelet (t, h, w), as in the paper
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class DecoderConfig:
    # Channels of the stem (at grid x grid) then of each 2x upsampling block; one block per
    # resolution doubling, so len(widths) == 1 + log2(res / grid).
    widths: tuple[int, ...] = (64, 64, 64, 32, 32)
    grid: int = 8  # h0 = w0 of the 3-D positional-encoding grid (paper ablation: 1, 8, 16)
    pe_freqs: int = 16  # L frequencies 1.25^i * pi per coordinate (t, x, y), sin and cos
    dyn_frac: float = 0.25  # share of each conv layer's output channels with token-made kernels
    param: str = "channel"  # channel | repeat | fmm
    reuse: str = "multihead"  # multihead | direct | none
    upsample: str = "transposed"  # transposed | pixelshuffle | bilinear
    side: str = "residual"  # residual | vanilla | skips

    @property
    def pe_channels(self) -> int:
        return 6 * self.pe_freqs


@dataclass(frozen=True)
class DiTConfig:
    depth: int = 4
    hidden: int = 128
    heads: int = 4
    mlp_ratio: float = 4.0
    # What the network's last layer predicts: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho
    # 2022). Either way the DiT returns eps (models/dit.py), so samplers and runtimes never see the difference.
    prediction: str = "v"


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "tiny"
    res: int = 128
    frames: int = 16  # clip length the encoder reads (the decoder renders any count)
    fps: float = 8.0  # frame rate of the training clips: a generated clip lasts frames / fps seconds
    tokens: int = 32  # N weight tokens per video
    token_dim: int = 16  # d_z
    num_classes: int = 8  # class labels; index num_classes is the null class for CFG
    class_names: tuple[str, ...] = ()  # optional names of the labels (the training set's folders)
    refine_steps: int = 0  # encoding's default Adam steps on the tokens after the encoder (models/refine.py)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        enc = dict(d.pop("encoder"))
        enc["patch"] = tuple(enc["patch"])
        dec = dict(d.pop("decoder"))
        dec["widths"] = tuple(dec["widths"])
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(encoder=EncoderConfig(**enc), decoder=DecoderConfig(**dec),
                   dit=DiTConfig(**{"prediction": "eps", **d.pop("dit")}), **d)  # eps: before the field existed


def validate(cfg: ModelConfig) -> None:
    """Raise ValueError when the parts of a config do not fit together."""
    dec, enc = cfg.decoder, cfg.encoder
    for name, value, allowed in (("param", dec.param, PARAM_MODES), ("reuse", dec.reuse, REUSE_MODES),
                                 ("upsample", dec.upsample, UPSAMPLE_MODES), ("side", dec.side, SIDE_MODES)):
        if value not in allowed:
            raise ConfigError(f"decoder.{name}={value!r}; expected one of {', '.join(allowed)}")
    ratio = cfg.res / dec.grid
    if ratio < 1 or 2 ** round(math.log2(ratio)) != ratio:
        raise ConfigError(f"res {cfg.res} must be the PE grid {dec.grid} times a power of two")
    if len(dec.widths) != 1 + round(math.log2(ratio)):
        raise ConfigError(f"decoder.widths has {len(dec.widths)} entries; res {cfg.res} on a "
                          f"{dec.grid}x{dec.grid} grid needs {1 + round(math.log2(ratio))}")
    pt, ph, pw = enc.patch
    if cfg.frames % pt or cfg.res % ph or cfg.res % pw:
        raise ConfigError(f"{cfg.frames}x{cfg.res}^2 clips do not tile into {enc.patch} tubelets")
    if cfg.dit.prediction not in PREDICTIONS:
        raise ConfigError(f"dit.prediction={cfg.dit.prediction!r}; expected one of {', '.join(PREDICTIONS)}")
    if enc.dim % enc.heads or cfg.dit.hidden % cfg.dit.heads:
        raise ConfigError("transformer width must be divisible by its head count")
    if not 0 < cfg.fps <= 1000:
        raise ConfigError(f"fps must be in (0, 1000], got {cfg.fps}")
    if cfg.refine_steps < 0:
        raise ConfigError(f"refine_steps must be >= 0, got {cfg.refine_steps}")
    if cfg.class_names and len(cfg.class_names) != cfg.num_classes:
        raise ConfigError(f"{len(cfg.class_names)} class names for {cfg.num_classes} classes")
    if dec.reuse == "none" and cfg.tokens < len(dec.widths):
        raise ConfigError(f"reuse='none' gives each of {len(dec.widths)} layers its own tokens; "
                          f"{cfg.tokens} tokens are too few")


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

# Channels per feature-map side (8 ... 256). L is sized so that its decoder costs ~0.65x the
# SD-VAE decoder's MACs for a 16x128^2 video (the paper's latency ratio 0.032 s / 0.048 s).
_WIDTHS: dict[str, dict[int, int]] = {
    "tiny": {1: 64, 2: 64, 4: 64, 8: 64, 16: 64, 32: 64, 64: 32, 128: 16, 256: 16},
    "S": {1: 256, 2: 256, 4: 256, 8: 256, 16: 256, 32: 128, 64: 128, 128: 64, 256: 32},
    "B": {1: 512, 2: 512, 4: 512, 8: 512, 16: 384, 32: 256, 64: 192, 128: 96, 256: 48},
    "L": {1: 1024, 2: 1024, 4: 1024, 8: 1024, 16: 1024, 32: 768, 64: 640, 128: 384, 256: 96},
}

# (tokens at 128, tokens at 256, d_z, encoder, DiT)
_PRESETS: dict[str, tuple[int, int, int, EncoderConfig, DiTConfig]] = {
    # tiny reads 16x16 tubelets instead of the paper's 8x8: 4x fewer encoder tokens keeps
    # CPU training of the embedded default within budget.
    "tiny": (32, 40, 16, EncoderConfig(128, 4, 4, patch=(4, 16, 16)), DiTConfig(4, 128, 4)),
    "S": (128, 160, 16, EncoderConfig(384, 8, 6), DiTConfig(12, 384, 6)),
    "B": (128, 160, 32, EncoderConfig(768, 12, 12), DiTConfig(12, 768, 12)),
    "L": (128, 160, 32, EncoderConfig(1024, 24, 16), DiTConfig(24, 1024, 16)),
}
PRESETS = tuple(_PRESETS)


def decoder_widths(preset_name: str, res: int, grid: int = 8) -> tuple[int, ...]:
    """Channel widths from the grid up to `res` (stem first), following the preset's table."""
    table = _WIDTHS[preset_name]
    sides = [grid * 2**i for i in range(round(math.log2(res / grid)) + 1)]
    return tuple(table[s] for s in sides)


def preset(name: str, res: int = 128, num_classes: int = 101, **decoder_overrides: Any) -> ModelConfig:
    """The named preset at `res`; decoder ablation switches may be overridden by keyword."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    if res not in RESOLUTIONS:
        raise ConfigError(f"presets exist for res {RESOLUTIONS}, not {res}")
    n128, n256, d_z, enc, dit = _PRESETS[name]
    defaults = {"pe_freqs": 8} if name == "tiny" else {}  # tiny sees few frames; fewer bands suffice
    dec = replace(DecoderConfig(**defaults), **decoder_overrides)
    dec = replace(dec, widths=decoder_widths(name, res, dec.grid))
    return ModelConfig(preset=name, res=res, tokens=n128 if res == 128 else n256, token_dim=d_z,
                       num_classes=num_classes, encoder=enc, decoder=dec, dit=dit)
