"""Fixtures of the pytest-benchmark suite: random-init tiny and S models, exported once per session."""
from __future__ import annotations

import pytest

from nerv_rt.bench.suites import random_checkpoint


@pytest.fixture(scope="session", params=["tiny", "S"])
def model_paths(request, tmp_path_factory):
    """(preset name, checkpoint path, export folder) of a random-init preset at 128^2."""
    from nerv_rt.export.onnx_export import export

    folder = tmp_path_factory.mktemp(request.param)
    path = random_checkpoint(request.param, 128, folder)
    return request.param, path, export(path, folder / "export")
