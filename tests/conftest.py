"""Shared fixtures: tiny random-init checkpoints and exports made on the fly (no downloads)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.models.dit import ImplicitDiT
from nerv_rt.models.hyper_ae import NeRVVAE
from nerv_rt.models.presets import preset

os.environ.setdefault("OMP_NUM_THREADS", "2")


def random_checkpoint(res: int = 128, seed: int = 0, num_classes: int = 8) -> ckpt_io.Checkpoint:
    """A tiny checkpoint with random weights; the DiT's zero-initialized output layers are perturbed
    so that it computes a non-trivial function (parity tests would pass on zeros otherwise)."""
    cfg = preset("tiny", res, num_classes=num_classes)
    torch.manual_seed(seed)
    vae, dit = NeRVVAE(cfg), ImplicitDiT(cfg)
    with torch.no_grad():
        for p in dit.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    std = torch.rand(cfg.token_dim) + 0.5
    return ckpt_io.Checkpoint(cfg, vae.state_dict(), dit.state_dict(), None, std)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny128.pt"
    ckpt_io.save(random_checkpoint(128), path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, tiny_ckpt) -> Path:
    from nerv_rt.export.onnx_export import export

    return export(tiny_ckpt, tmp_path_factory.mktemp("export") / "tiny128")


@pytest.fixture(scope="session")
def tiny_aoti_export(tmp_path_factory, tiny_ckpt) -> Path:
    """The tiny checkpoint exported with AOTInductor packages for this CPU (compiled once per session: about a
    minute)."""
    from nerv_rt.export.onnx_export import export

    return export(tiny_ckpt, tmp_path_factory.mktemp("aoti") / "tiny128", aoti_device="cpu")
