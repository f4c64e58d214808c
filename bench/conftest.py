"""Fixtures of the pytest-benchmark suite: random-init tiny and S models, exported once per session."""
from __future__ import annotations

import pytest
import torch

from nerv_rt import checkpoint as ckpt_io
from nerv_rt.models.dit import ImplicitDiT
from nerv_rt.models.hyper_ae import NeRVVAE
from nerv_rt.models.presets import preset


@pytest.fixture(scope="session", params=["tiny", "S"])
def model_paths(request, tmp_path_factory):
    """(checkpoint path, export folder) of a random-init preset at 128^2."""
    from nerv_rt.export.onnx_export import export

    cfg = preset(request.param, 128)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    path = folder / f"{request.param}.pt"
    ckpt_io.save(ckpt_io.Checkpoint(cfg, NeRVVAE(cfg).state_dict(), ImplicitDiT(cfg).state_dict(), None,
                                    torch.ones(cfg.token_dim)), path)
    return request.param, path, export(path, folder / "export")
