"""Checkpoints: a `.pt` plain dict (loaded with weights_only=True) or a save_pretrained folder
(config.json + model.safetensors). One loader for both that says clearly what is wrong."""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, reason
from .formats import CHECKPOINT_FORMAT as FORMAT
from .formats import CHECKPOINT_VERSION as VERSION
from .formats import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    atomic_path,
    atomic_write_text,
    check_version,
    read_json,
    torch_file_format,
)
from .models.presets import ModelConfig

STATE_PARTS = ("vae", "dit", "ema")

StateDict = dict[str, torch.Tensor]


@dataclass
class Checkpoint:
    config: ModelConfig
    vae: StateDict
    dit: StateDict | None = None
    ema: StateDict | None = None  # EMA of the DiT weights; what generation uses when present
    token_std: torch.Tensor | None = None  # (d_z,) per-dimension std of training tokens
    train_state: dict[str, Any] = field(default_factory=dict)  # optimizer, step, ... (.pt only)
    source: str = "checkpoint"  # where it was loaded from, for error messages (not saved)

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT, "version": VERSION, "config": self.config.to_dict(), "vae": self.vae,
             "dit": self.dit, "ema": self.ema, "token_std": self.token_std}
        if self.train_state:
            d["train_state"] = self.train_state
        return d


# --------------------------------------------------------------------------------------------
# Writing (atomic: a temp file in the same folder, then rename)
# --------------------------------------------------------------------------------------------

def save(ckpt: Checkpoint, path: str | Path) -> None:
    """torch.save the plain dict atomically, so an interrupted write never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(ckpt.to_dict(), tmp)


def save_pretrained(ckpt: Checkpoint, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    """config.json + model.safetensors (keys 'vae.*', 'dit.*', 'ema.*', 'token_std'); no train state.

    `dtype` (e.g. torch.float16) stores the weights smaller; loading casts them back to float32."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cast = (lambda v: v.to(dtype) if dtype is not None and v.is_floating_point() else v)  # noqa: E731
    tensors = {f"{part}.{k}": cast(v).contiguous() for part in STATE_PARTS
               for k, v in (getattr(ckpt, part) or {}).items()}
    if ckpt.token_std is not None:
        tensors["token_std"] = ckpt.token_std.contiguous()
    meta = {"format": FORMAT, "version": VERSION, "config": ckpt.config.to_dict(),
            "parts": [p for p in STATE_PARTS if getattr(ckpt, p) is not None]}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(folder / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def load(path: str | Path) -> Checkpoint:
    """Load a `.pt` file or a save_pretrained folder; raise CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    raw = _read_folder(path) if path.is_dir() else _read_pt(path)
    return _from_dict(raw, path)


def has_dit(path: str | Path) -> bool:
    """Whether a checkpoint holds a DiT, without reading its weights: a save_pretrained folder says so in its
    config; a `.pt` file is memory-mapped (an L checkpoint is about 3 GB)."""
    path = Path(path)
    if path.is_dir():
        return "dit" in read_json(path / CONFIG_FILE, FORMAT, VERSION, "checkpoint").get("parts", [])
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    return _from_dict(_read_pt(path, mmap=True), path).dit is not None


def _read_pt(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A `.pt` file's dict; `mmap` maps its tensors rather than reading them (zip-format files, torch's default)."""
    kind = torch_file_format(path)
    if kind == "zip" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint (incomplete zip archive)")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and kind == "zip")
    except Exception as e:  # any unpickling failure means "not ours"
        raise CheckpointError(f"{path}: not a nerv-rt checkpoint (torch.load cannot read it: {reason(e)})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nerv-rt checkpoint (no format marker {FORMAT!r})")
    return raw


def _read_folder(path: Path) -> dict[str, Any]:
    config_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not config_file.is_file() or not weights_file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    meta = read_json(config_file, FORMAT, VERSION, "checkpoint")
    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights_file}: truncated or corrupt safetensors file ({e})") from None
    raw: dict[str, Any] = {k: meta[k] for k in ("format", "version", "config")}
    for part in STATE_PARTS:
        prefix = f"{part}."
        sd = {k[len(prefix):]: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()
              if k.startswith(prefix)}
        raw[part] = sd if part in meta.get("parts", []) else None
    raw["token_std"] = tensors.get("token_std")
    return raw


def _from_dict(raw: dict[str, Any], path: Path) -> Checkpoint:
    check_version(raw.get("version"), VERSION, path)
    try:
        config = ModelConfig.from_dict(raw["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None
    if not raw.get("vae"):
        raise CheckpointError(f"{path}: checkpoint holds no VAE weights")
    return Checkpoint(config=config, vae=raw["vae"], dit=raw.get("dit"), ema=raw.get("ema"),
                      token_std=raw.get("token_std"), train_state=raw.get("train_state") or {},
                      source=str(path))


def check_state_dict(name: str, expected: dict[str, torch.Tensor], got: StateDict, source: Path | str) -> None:
    """Compare a checkpoint part with the model its config builds: missing, extra, mismatched shapes."""
    def listing(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: {name} weights are missing keys: {listing(missing)}")
    if extra:
        raise CheckpointError(f"{source}: {name} weights have unexpected keys: {listing(extra)}")
    for k, v in expected.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {name}.{k} has shape {tuple(got[k].shape)} but the config "
                                  f"builds {tuple(v.shape)} (config and weights do not match)")


def slim(ckpt: Checkpoint) -> Checkpoint:
    """What inference needs: the EMA weights as the DiT (when present), no optimizer or train state."""
    return Checkpoint(config=ckpt.config, vae=ckpt.vae, dit=ckpt.ema or ckpt.dit, ema=None,
                      token_std=ckpt.token_std, source=ckpt.source)


def build_models(ckpt: Checkpoint, device: str | torch.device = "cpu", use_ema: bool = True):
    """(NeRVVAE, ImplicitDiT or None) in eval mode with the checkpoint's weights, after checking
    keys and shapes against what the config builds. The DiT takes the EMA weights when present."""
    from .models.dit import ImplicitDiT
    from .models.hyper_ae import NeRVVAE

    with torch.device("meta"):
        vae_meta, dit_meta = NeRVVAE(ckpt.config), ImplicitDiT(ckpt.config)
    check_state_dict("vae", vae_meta.state_dict(), ckpt.vae, ckpt.source)
    vae = NeRVVAE(ckpt.config)
    vae.load_state_dict(ckpt.vae)
    dit = None
    dit_state = ckpt.ema if (use_ema and ckpt.ema) else ckpt.dit
    if dit_state:
        check_state_dict("dit", dit_meta.state_dict(), dit_state, ckpt.source)
        dit = ImplicitDiT(ckpt.config)
        dit.load_state_dict(dit_state)
        dit = dit.to(device).eval()
    return vae.to(device).eval(), dit
