"""AOTInductor backend: the export's .pt2 packages (`nerv-rt export --aoti`), compiled ahead of time by PyTorch
for this machine's CPU or GPU, loaded without the model code. On CUDA the runtime captures the whole sampling
loop in one CUDA graph, as with torch-cudagraph: a package runs on torch's current stream."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NervError, setting
from ..export.specs import GraphSpec, graph_specs
from ..formats import sha256_file
from ..runtime.sources import ASSETS_DIR, DEFAULT, ModelSource, default_export_dir
from .base import Backend


def _entry(source: ModelSource, graph: str, device: str, precision: str) -> dict[str, Any] | None:
    for file, e in (source.manifest or {}).get("aoti", {}).items():
        if (e["graph"], e["device"], e["precision"]) == (graph, device, precision):
            return {**e, "file": file}
    return None


def packages_ready(source: ModelSource, device: str, precision: str = "fp32") -> bool:
    """Whether `auto` should pick aoti: packages for the DiT and the decoder compiled for this machine."""
    entries = [_entry(source, g, device, precision) for g in ("dit", "decoder")]
    if any(e is None for e in entries):
        return False
    from ..export.aoti_export import machine_key
    from ..export.manifest import stale_fields

    here = machine_key(device)
    return all(not stale_fields(e["key"], here) for e in entries)


class AotiEngine:
    def __init__(self, spec: GraphSpec, runner):
        self.spec, self.runner = spec, runner

    def __call__(self, **inputs) -> dict[str, Any]:
        import torch

        with torch.no_grad():
            return {self.spec.output_names[0]: self.runner(*(inputs[n].contiguous() for n in self.spec.input_names))}


class AotiBackend(Backend):
    name = "aoti"

    def __init__(self, source: ModelSource, device: str = "auto", precision: str = "fp32", capture: bool = True):
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise NervError(f"{setting('device', 'cuda')}: no CUDA GPU is available to torch")
        self.torch, self.source = torch, source
        self.device, self.precision = device, precision
        self.can_capture = capture and device == "cuda"
        self.specs = graph_specs(source.config)
        self._runners: dict[str, Any] = {}  # one loaded package (weights on the device) per graph, shared by engines
        if not any(_entry(source, g, device, precision) for g in self.specs):  # fail at load, not at the first call
            raise NervError(f"{source.path}: no {precision} AOTInductor packages for {device}; make them with "
                            f"{self._redo()}")

    def _redo(self) -> str:
        """The command that compiles this source's packages for this device and precision, and where they go."""
        # export takes weights: this source's own, else the checkpoint the folder was exported from
        ckpt = self.source.origin if self.source.has_checkpoint else (self.source.manifest or {}).get(
            "checkpoint", {}).get("path", "CHECKPOINT")
        if Path(ckpt).resolve().is_relative_to(ASSETS_DIR):  # an export of the embedded default
            ckpt = DEFAULT
        return (f"`nerv-rt export {ckpt} --aoti --device {self.device}"
                + (f" --precision {self.precision}`" if self.precision != "fp32" else "`")
                + f" and load the folder it writes ({default_export_dir(ckpt)})")

    def engine(self, graph: str) -> AotiEngine:
        if graph not in self._runners:
            self._runners[graph] = self._load(graph)
        return AotiEngine(self.specs[graph], self._runners[graph])

    def _load(self, graph: str):
        from ..export.aoti_export import machine_key
        from ..export.manifest import stale_fields

        e = _entry(self.source, graph, self.device, self.precision)
        redo = self._redo()
        if e is None:
            raise NervError(f"{self.source.path}: no {self.precision} AOTInductor package of the {graph} for {self.device}; "
                            f"make them with {redo}")
        here = machine_key(self.device)
        stale = stale_fields(e["key"], here)
        if stale:
            built = ", ".join(f"{k} {e['key'].get(k)} (here {here[k]})" for k in stale)
            raise NervError(f"{self.source.path / e['file']}: compiled for {built}; export again on this machine with {redo}")
        path = self.source.path / e["file"]
        if not path.is_file() or sha256_file(path) != e["sha256"]:
            raise NervError(f"{path}: missing or changed since export; export again with {redo}")
        # The default runner hands calls to a pool of model copies and syncs on CUDA events between them, which a
        # CUDA graph capture refuses; the single-threaded runner is the one torch documents for capture.
        return self.torch._inductor.aoti_load_package(str(path), run_single_threaded=self.device == "cuda")

    def asarray(self, a: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def numpy(self, a) -> np.ndarray:
        return a.detach().float().cpu().numpy()

    def concat(self, arrays: list):
        return self.torch.cat(arrays)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
