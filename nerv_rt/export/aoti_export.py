"""AOTInductor packages (.pt2): each graph ahead-of-time compiled by PyTorch for one device, loadable without
the model code (`torch._inductor.aoti_load_package`). Dynamic batch and frame axes as in the ONNX specs.

A package is machine code for one torch version and one device (a CPU's vector ISA, a GPU architecture):
its manifest entry holds a key of those, and the backend refuses a package whose key is not this machine's,
with a message that says to export again. Parity against eager torch is measured at export and recorded.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import NervError
from ..formats import atomic_path, sha256_file
from ..machine import cpu_name, gpu_identity
from ..models.graphs import graph_modules
from .precision import MIN_TYPED_DECODER_PSNR_DB, torch_dtype
from .specs import GRAPHS, GraphSpec, graph_specs

MIN_AOTI_DECODER_PSNR_DB = 60.0  # fp32 package against eager fp32
DEVICES = ("cpu", "cuda")


def package_file(graph: str, device: str, precision: str) -> str:
    """decoder.cpu.pt2, dit.cuda.fp16.pt2, ..."""
    return f"{graph}.{device}.pt2" if precision == "fp32" else f"{graph}.{device}.{precision}.pt2"


def machine_key(device: str) -> dict[str, str]:
    """What a package compiled here depends on besides its graph: torch, and the CPU model or the GPU."""
    key = {"torch": torch.__version__, "device": device}
    if device == "cuda":
        key["gpu"], key["compute_capability"] = gpu_identity()
    else:
        key["cpu"] = cpu_name()
    return key


def _dynamic(spec: GraphSpec) -> dict[str, dict[int, torch.export.Dim] | None]:
    dims = {s: torch.export.Dim(s, min=1, max=65536) for s in ("B", "F")}
    return {t.name: {k: dims[d] for k, d in enumerate(t.shape) if isinstance(d, str)} or None for t in spec.inputs}


def compile_package(module: torch.nn.Module, spec: GraphSpec, inputs: dict[str, np.ndarray], device: str, path: Path) -> None:
    args = tuple(torch.from_numpy(inputs[n]).to(device) for n in spec.input_names)
    with torch.no_grad():
        program = torch.export.export(module.to(device), args, dynamic_shapes=_dynamic(spec))
    with atomic_path(path) as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))


def _parity(path: Path, reference: torch.nn.Module, spec: GraphSpec, inputs: dict[str, np.ndarray], device: str) -> dict:
    runner = torch._inductor.aoti_load_package(str(path))
    args = tuple(torch.from_numpy(inputs[n]).to(device) for n in spec.input_names)
    with torch.no_grad():
        got, want = runner(*args).float().cpu().numpy(), reference.to(device)(*args).float().cpu().numpy()
    err = np.abs(got - want)
    result = {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}
    if spec.name == "decoder":
        mse = float(np.mean((got - want) ** 2))
        result["psnr_db"] = float("inf") if mse == 0 else float(10 * np.log10(4.0 / mse))
    return result


def export_aoti(ckpt, out: Path, device: str, precisions: Sequence[str], trace_dims: dict[str, int],
                check_dims: dict[str, int], step: Callable[[str], None] | None = None,
                graphs_wanted: Sequence[str] = GRAPHS) -> dict[str, Any]:
    """Compile every graph of `ckpt` at each precision for `device` into `out`; returns the manifest's "aoti"
    entries {file: {graph, precision, device, sha256, key, validation}}."""
    from ..checkpoint import build_models

    if device not in DEVICES:
        raise NervError(f"unknown --device {device!r} for --aoti; choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise NervError("--aoti --device cuda: no CUDA GPU is available to torch")
    specs, key = graph_specs(ckpt.config), machine_key(device)
    reference = graph_modules(*build_models(ckpt, "cpu"))
    entries: dict[str, Any] = {}
    for p in precisions:
        modules = graph_modules(*build_models(ckpt, "cpu"))
        for name in (g for g in GRAPHS if g in modules and g in graphs_wanted):
            spec, path = specs[name], out / package_file(name, device, p)
            if step:
                step(f"{ckpt.config.res}: {path.name} (AOTInductor)")
            num = ckpt.config.num_classes
            compile_package(modules[name].to(torch_dtype(p)), spec, spec.sample_inputs(trace_dims, num_classes=num), device, path)
            v = _parity(path, reference[name], spec, spec.sample_inputs(check_dims, seed=1, num_classes=num), device)
            floor = MIN_AOTI_DECODER_PSNR_DB if p == "fp32" else MIN_TYPED_DECODER_PSNR_DB
            if name == "decoder" and v["psnr_db"] < floor:
                raise NervError(f"{path.name} reaches {v['psnr_db']:.1f} dB PSNR against eager fp32 PyTorch, below the "
                                f"{floor:.0f} dB floor; the compiled package is wrong")
            entries[path.name] = {"graph": name, "precision": p, "device": device, "sha256": sha256_file(path),
                                  "key": key, "validation": v}
    return entries
