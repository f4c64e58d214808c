"""What a model source names: `default`, a checkpoint (.pt or save_pretrained folder), an export
folder, a folder holding both a checkpoint and its exported graphs (the embedded default), or a
folder of those (one per resolution). Torch-free except for loading .pt files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, require, warn
from ..formats import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MANIFEST_FILE,
    read_json,
    sha256_checkpoint,
    torch_file_format,
)
from ..models.presets import ModelConfig

DEFAULT = "default"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"


@dataclass
class ModelSource:
    """One model at one resolution: a checkpoint (torch backends), exported graphs (onnxruntime,
    tensorrt, aoti), or both."""
    origin: str  # the source as the user named it ('default', a path), for messages that say what to run
    path: Path
    config: ModelConfig
    manifest: dict[str, Any] | None = None  # the export's manifest.json, when `path` holds graphs
    checkpoint_path: Path | None = None  # a .pt file or a save_pretrained folder, when there are weights
    _checkpoint: Any = field(default=None, repr=False)

    @property
    def has_graphs(self) -> bool:
        return self.manifest is not None

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_path is not None

    def checkpoint(self):
        """The loaded checkpoint (loaded once; needs torch)."""
        if self.checkpoint_path is None:
            raise CheckpointError(f"{self.path}: holds exported graphs but no checkpoint weights")
        if self._checkpoint is None:
            from ..checkpoint import load

            self._checkpoint = load(self.checkpoint_path)
        return self._checkpoint


def is_default(source: str | Path) -> bool:
    """Only the string 'default' names the embedded model: a Path, or './default', is a file or folder."""
    return isinstance(source, str) and source == DEFAULT


def source_path(source: str | Path) -> Path:
    return ASSETS_DIR if is_default(source) else Path(source)


def source_name(source: str | Path) -> str:
    """A short name for artifacts: 'default', a checkpoint's stem, a folder's name."""
    path = source_path(source)
    return DEFAULT if is_default(source) else (path.stem if path.is_file() else path.resolve().name)


def default_export_dir(source: str | Path) -> Path:
    """Where `nerv-rt export SOURCE` writes without --out: engines/<source_name>."""
    return Path("engines") / source_name(source)


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json(folder / MANIFEST_FILE, EXPORT_FORMAT, EXPORT_VERSION, "export manifest")


def _config(raw: Any, path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None


def _single(path: Path, origin: str) -> ModelSource | None:
    if path.is_file():
        if torch_file_format(path) is None:
            raise CheckpointError(f"{path}: not a nerv-rt checkpoint (a torch .pt file), an export folder or a "
                                  "checkpoint folder")
        require("torch", "safetensors", extra="torch")  # only .pt files need torch: one line naming the extra
        from ..checkpoint import load

        ckpt = load(path)
        return ModelSource(origin, path, ckpt.config, checkpoint_path=path, _checkpoint=ckpt)
    has_graphs, has_weights = (path / MANIFEST_FILE).is_file(), (path / CONFIG_FILE).is_file()
    if not (has_graphs or has_weights):
        return None
    manifest = read_manifest(path) if has_graphs else None
    if has_weights:
        meta = read_json(path / CONFIG_FILE, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "checkpoint")
        config = _config(meta.get("config"), path)
    else:
        config = _config(manifest.get("config"), path)
    if manifest is not None and has_weights:
        # Weights and graphs side by side must be one model: the manifest names the checkpoint it was exported from.
        if manifest.get("checkpoint", {}).get("sha256") != sha256_checkpoint(path):
            raise CheckpointError(f"{path}: its ONNX graphs were exported from other weights than the checkpoint "
                                  "beside them (manifest sha256 differs); export the checkpoint again")
    return ModelSource(origin, path, config, manifest, path if has_weights else None)


def resolve(source: str | Path) -> list[ModelSource]:
    """The models a source holds, sorted by resolution (one resolution each)."""
    path = source_path(source)
    origin = f"./{DEFAULT}" if not is_default(source) and str(source) == DEFAULT else str(source)  # for hints to run
    if is_default(source) and Path(DEFAULT).exists():
        warn(f"'{DEFAULT}' is the embedded default model, not ./{DEFAULT} here; give ./{DEFAULT} for that")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    single = _single(path, origin)
    if single is not None:
        return [single]
    found = [s for s in (_single(sub, origin) for sub in sorted(path.iterdir()) if sub.is_dir()) if s is not None]
    if not found:
        raise CheckpointError(f"{path}: not a checkpoint, an export folder, or a folder of those "
                              f"(expected {MANIFEST_FILE} or {CONFIG_FILE})")
    found.sort(key=lambda s: s.config.res)
    resolutions = [s.config.res for s in found]
    if len(set(resolutions)) != len(resolutions):
        raise CheckpointError(f"{path}: several models share a resolution ({resolutions})")
    return found
