"""Every example config in configs/ loads and checks, exactly as shipped.

Running them is the CLI tests' job; here each must pass `load_config` with
its files checked, so a schema change that breaks an example fails at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from convflow.config import build_kernels, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FILES = sorted(p for p in CONFIGS.iterdir() if p.suffix in {".yaml", ".yml", ".toml", ".json"})


def test_every_format_has_an_example() -> None:
    assert {p.suffix for p in FILES} >= {".yaml", ".toml", ".json"}
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_config_loads_as_shipped(path: Path) -> None:
    config = load_config(path)
    assert config.outputs
    for output in config.outputs:
        # Relative output paths land in configs/out/, which git ignores.
        assert output.path.is_relative_to(CONFIGS / "out")
    build_kernels(config)


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix != ".json"], ids=lambda p: p.name)
def test_config_says_how_to_run_it(path: Path) -> None:
    # JSON has no comments; every other example opens with the command that runs it.
    assert f"convflow run configs/{path.name}" in path.read_text()
