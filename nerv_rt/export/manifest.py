"""manifest.json of an export folder: writing it, and checking a folder's files against it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..formats import MANIFEST_FILE, atomic_write_text, sha256_file


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def verify_graph(folder: Path, manifest: dict[str, Any], graph: str) -> Path:
    """Path of `graph`'s ONNX file after checking it exists and its sha256 matches the manifest."""
    entry = manifest.get("graphs", {}).get(graph)
    if entry is None:
        raise CheckpointError(f"{folder}: the export has no {graph} graph")
    path = folder / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in {MANIFEST_FILE}); re-export the model")
    if sha256_file(path) != entry["sha256"]:
        raise CheckpointError(f"{path}: sha256 does not match {MANIFEST_FILE} (file changed since export); "
                              "re-export the model")
    return path
