"""What a model source names: `default`, a checkpoint (.pt or save_pretrained folder), an export
folder, or a folder holding several of those (one per resolution). Torch-free except for .pt files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..formats import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    MANIFEST_FILE,
    read_json,
)
from ..models.presets import ModelConfig

DEFAULT = "default"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"


@dataclass
class ModelSource:
    kind: str  # "checkpoint" | "export"
    path: Path
    config: ModelConfig
    manifest: dict[str, Any] | None = None  # export folders only
    _checkpoint: Any = field(default=None, repr=False)

    def checkpoint(self):
        """The loaded checkpoint (checkpoint sources; loaded once, torch needed)."""
        if self._checkpoint is None:
            from ..checkpoint import load

            self._checkpoint = load(self.path)
        return self._checkpoint


def source_path(source: str | Path) -> Path:
    return ASSETS_DIR if str(source) == DEFAULT else Path(source)


def source_name(source: str | Path) -> str:
    """A short name for artifacts: 'default', a checkpoint's stem, a folder's name."""
    path = source_path(source)
    return DEFAULT if str(source) == DEFAULT else (path.stem if path.is_file() else path.resolve().name)


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_json(folder / MANIFEST_FILE, EXPORT_FORMAT, EXPORT_VERSION, "export manifest")


def _config(raw: Any, path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(raw)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model config ({e})") from None


def _single(path: Path) -> ModelSource | None:
    if path.is_file():
        from ..checkpoint import load  # torch: only .pt files need it

        ckpt = load(path)
        return ModelSource("checkpoint", path, ckpt.config, _checkpoint=ckpt)
    if (path / MANIFEST_FILE).is_file():
        manifest = read_manifest(path)
        return ModelSource("export", path, _config(manifest.get("config"), path), manifest)
    if (path / CONFIG_FILE).is_file():
        meta = read_json(path / CONFIG_FILE, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "checkpoint")
        return ModelSource("checkpoint", path, _config(meta.get("config"), path))
    return None


def resolve(source: str | Path) -> list[ModelSource]:
    """The models a source holds, sorted by resolution (one resolution each)."""
    path = source_path(source)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    single = _single(path)
    if single is not None:
        return [single]
    found = [s for s in (_single(sub) for sub in sorted(path.iterdir()) if sub.is_dir()) if s is not None]
    if not found:
        raise CheckpointError(f"{path}: not a checkpoint, an export folder, or a folder of those "
                              f"(expected {MANIFEST_FILE} or {CONFIG_FILE})")
    found.sort(key=lambda s: s.config.res)
    resolutions = [s.config.res for s in found]
    if len(set(resolutions)) != len(resolutions):
        raise CheckpointError(f"{path}: several models share a resolution ({resolutions})")
    return found
