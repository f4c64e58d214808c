"""The README's front-door commands and preset table stay true."""
from pathlib import Path

import pytest

from nerv_rt.models.presets import PRESETS, RESOLUTIONS, preset
from nerv_rt.models.stats import describe

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
INSTALL_AND_RUN = "python -m pip install . && nerv-rt generate --out clip.mp4"
TEST_COMMAND = ('python -m pip install "torch==2.13.0" -e ".[test]" && '
                'python -m pip install --no-deps "tensorrt-stubs==10.13.0.35.1" && python -m pytest -q')


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    assert INSTALL_AND_RUN in README
    assert TEST_COMMAND in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert TEST_COMMAND in ci.splitlines()
    assert "-eq 5" in ci  # pytest's "no tests collected" is handled


@pytest.mark.parametrize("name", PRESETS)
def test_readme_preset_table_matches_info(name):
    for res in RESOLUTIONS:
        d = describe(preset(name, res))
        p, m = d["params"], d["macs"]
        row = (f"| {name} | {res} | {d['tokens']} x {d['token_dim']} | {p['encoder'] / 1e6:.2f} M | "
               f"{p['decoder'] / 1e6:.2f} M | {p['dit'] / 1e6:.2f} M | {m['decoder_16f'] / 1e9:.1f} | "
               f"{m['dit_step'] / 1e9:.2f} |")
        assert row in README, row


def test_readme_python_example_runs(tmp_path, monkeypatch):
    block = README.split("## Python API")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip-0.mp4", "clip-1.mp4", "long.mp4"]
