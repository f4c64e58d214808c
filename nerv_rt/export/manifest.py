"""manifest.json of an export folder: writing it, and checking a folder's files against it.

Each graph has an fp32 entry ({file, sha256, inputs, outputs, validation}) and, when exported with
`--precision`, a typed variant per precision under entry["precisions"][p] ({file, sha256, validation}):
precision lives in the graph (TensorRT 11 is strongly typed), not in builder flags. A graph that reads its
weights from the safetensors file beside it (export/shared_weights.py) has entry["external_data"] = {file, sha256}.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..formats import MANIFEST_FILE, atomic_write_text, sha256_file

PRECISIONS = ("fp32", "fp16", "bf16")


def key_digest(key: dict[str, Any]) -> str:
    """A short name for a cache key (engines, AOTInductor packages)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def stale_fields(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Which fields of a cache key differ (empty: the recorded artifact is still valid)."""
    return sorted(k for k in wanted if recorded.get(k) != wanted[k])


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def typed_file(graph: str, precision: str) -> str:
    """File name of a graph at a precision: decoder.onnx, decoder.fp16.onnx, ..."""
    return f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx"


def graph_entry(folder: Path, manifest: dict[str, Any], graph: str, precision: str = "fp32") -> dict[str, Any]:
    """The manifest entry of `graph` at `precision` (file, sha256, validation); a clear error when absent."""
    entry = manifest.get("graphs", {}).get(graph)
    if entry is None:
        raise CheckpointError(f"{folder}: the export has no {graph} graph")
    if precision == "fp32":
        return entry
    typed = entry.get("precisions", {}).get(precision)
    if typed is None:
        raise CheckpointError(f"{folder}: the export has no {precision} {graph} graph; export one with "
                              f"`nerv-rt export <checkpoint or default> --precision {precision}` and load its folder")
    return typed


def graph_sha256(entry: dict[str, Any]) -> str:
    """What a graph computes, as a digest for cache keys: its file's sha256, combined with that of the weights
    file it reads when it has one (the graph file alone does not change when those weights do)."""
    if "external_data" not in entry:
        return entry["sha256"]
    return hashlib.sha256(f"{entry['sha256']}+{entry['external_data']['sha256']}".encode()).hexdigest()


def verify_graph(folder: Path, manifest: dict[str, Any], graph: str, precision: str = "fp32") -> Path:
    """Path of `graph`'s ONNX file at `precision` after checking that it, and the weights file it reads when it
    has one, exist and match the manifest's sha256."""
    entry = graph_entry(folder, manifest, graph, precision)
    files = [entry] + ([entry["external_data"]] if "external_data" in entry else [])
    for f in files:
        path = folder / f["file"]
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST_FILE}); re-export the model")
        if f is not entry and path.resolve().parent != folder.resolve():  # ORT refuses external data outside it
            raise CheckpointError(f"{path}: a link to a file in another folder; the graphs read it, so copy the file here")
        if sha256_file(path) != f["sha256"]:
            raise CheckpointError(f"{path}: sha256 does not match {MANIFEST_FILE} (file changed since export); "
                                  "re-export the model")
    return folder / entry["file"]
