"""Tests for convflow.config._source: reading hostile config files without a hang, a crash or a traceback.

Each test here failed on main before #15: an alias bomb hung `validate`, deep
nesting and long integers raised RecursionError and ValueError, and a
forbidden character printed a second line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from convflow.cli import main
from convflow.config import load_config
from convflow.config._source import MAX_DEPTH, _walk_yaml, read_source
from convflow.errors import ConfigError

CONFIG = """\
input: {path: image.npy}
kernels:
  k: {type: gaussian, sigma: 1.0}
stages:
  - name: s
    steps: [{kernel: k}]
outputs:
  - {stage: s, path: out/s.zarr}
"""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """`levels` anchors, each a list of `width` aliases of the one before: width**levels leaves."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    np.save(tmp_path / "image.npy", np.zeros((8, 8), np.float32))
    return tmp_path


def test_an_alias_bomb_walks_each_node_once(folder: Path) -> None:
    text = alias_bomb()
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict = {}
    visited = _walk_yaml(folder / "bomb.yaml", node, (), lines, set())
    # 1 mapping + 9 anchored lists + 9 scalars; expanding the aliases would visit 9**9.
    assert visited == 19
    assert len(lines) == 9 + 9 * 9


def test_an_alias_bomb_under_a_kernel_is_refused_by_its_shape(folder: Path) -> None:
    path = folder / "bomb.yaml"
    path.write_text(
        "anchors:\n"
        + "".join(f"  {line}\n" for line in alias_bomb(8).splitlines())
        + CONFIG.replace("k: {type: gaussian, sigma: 1.0}", "k: {values: [*l7, *l7]}")
    )
    with pytest.raises(ConfigError, match=r"kernels\.k\.values: values nests lists more than 3 deep"):
        load_config(path)


def test_a_kernel_of_aliased_rows_is_refused_before_numpy_expands_it(folder: Path) -> None:
    path = folder / "wide.yaml"
    row = ", ".join(["1"] * 1000)
    plane = ", ".join(["*row"] * 1000)
    values = ", ".join(["*plane"] * 1000)
    text = CONFIG.replace("k: {type: gaussian, sigma: 1.0}", f"k: {{values: [{values}]}}")
    path.write_text(f"x-row: &row [{row}]\nx-plane: &plane [{plane}]\n" + text)
    with pytest.raises(ConfigError, match=r"values has shape \(1000, 1000, 1000\): 1,000,000,000 weights"):
        load_config(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.yaml", CONFIG + "execution: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        ("deep.json", '{"input": ' + "[" * 10_000 + "]" * 10_000 + "}"),
        ("deep.toml", "x = " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ],
)
def test_nesting_too_deep_to_parse_is_a_config_error(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{name}: .* nested too deeply to read"):
        read_source(path)


@pytest.mark.parametrize("suffix", [".yaml", ".json", ".toml"])
def test_nesting_deeper_than_any_key_is_a_config_error(folder: Path, suffix: str) -> None:
    deep = "[" * (MAX_DEPTH + 8) + "]" * (MAX_DEPTH + 8)
    text = {".yaml": f"x: {deep}\n", ".json": f'{{"x": {deep}}}', ".toml": f"x = {deep}\n"}[suffix]
    path = folder / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"x\[0\]: nests deeper than {MAX_DEPTH} levels"):
        read_source(path)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("long.yaml", CONFIG.replace("sigma: 1.0", "sigma: " + "9" * 5000), 3),
        ("long.json", '{\n"input": {"path": "image.npy"},\n"x": ' + "9" * 5000 + "}", 3),
        ("long.toml", "[input]\npath = 'image.npy'\nx = " + "9" * 5000 + "\n", 3),
    ],
)
def test_an_integer_too_long_to_convert_names_its_line(folder: Path, name: str, text: str, line: int) -> None:
    path = folder / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{name} line {line}: an integer of 5000 digits"):
        read_source(path)


def test_a_forbidden_character_is_one_error_line_with_its_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "bell.yaml"
    path.write_text(CONFIG + "execution: {scheduler: \x07}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: bell.yaml line 9: YAML syntax error, column 24: the character '\\x07'")


def test_an_alias_bomb_fails_validate_with_one_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "bomb.yaml"
    path.write_text("x:\n" + "".join(f"  {line}\n" for line in alias_bomb().splitlines()) + CONFIG)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == "error: bomb.yaml line 1, x: unknown key 'x'. Valid keys here: " + (
        "input, kernels, stages, outputs, execution\n"
    )
