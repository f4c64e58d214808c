"""File-format markers and the torch-free readers of our JSON files (checkpoint config, export manifest)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import CheckpointError

CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "nerv-rt/checkpoint", 1
EXPORT_FORMAT, EXPORT_VERSION = "nerv-rt/export", 1
CONFIG_FILE, WEIGHTS_FILE, MANIFEST_FILE = "config.json", "model.safetensors", "manifest.json"


def read_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Parse `path` and check its format marker and version; CheckpointError says what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CheckpointError(f"{path}: not a nerv-rt {what} (no format marker {fmt!r})")
    check_version(data.get("version"), version, path)
    return data


def check_version(found: Any, supported: int, path: Path | str) -> None:
    if not isinstance(found, int) or found > supported:
        raise CheckpointError(f"{path}: format version {found} is newer than this nerv-rt reads ({supported}); "
                              "upgrade nerv-rt")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
