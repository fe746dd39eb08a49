"""Fuzzing the CLI with mutated shipped configs: exit 0, or exit 2 with one ``error:`` line; nothing written.

Every config in configs/ is mutated twice over: in its data (a value replaced
by a hostile one, a key dropped or added, an item repeated; written back as
YAML or JSON) and in its raw bytes (a span cut, bytes inserted or replaced).
``validate`` and ``run --dry-run`` must then exit 0, or exit 2 with exactly
one ``error:`` line: never a traceback, never a hang, and never a change in
the folder they were given (#15, item 4). The calls run in this process
through `convflow.cli.main`, with a few real subprocesses at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from convflow.cli import main

CONFIGS = Path(__file__).parent.parent / "configs"
SHIPPED = sorted(p.name for p in CONFIGS.iterdir() if p.suffix in (".yaml", ".toml", ".json"))
# One call may take this long before it counts as a hang (the slowest valid one takes about 2 s).
HANG_SECONDS = 30

HOSTILE = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            7,
            2**31,
            2**63,
            -(2**63),
            10**30,
            0.0,
            -0.0,
            1e-300,
            1e308,
            -1e308,
            float("inf"),
            float("-inf"),
            float("nan"),
            0.5,
            True,
            False,
            None,
            "",
            "x",
            "zyx",
            "tzyx",
            "auto",
            "-1",
            "1e999",
            "{stem}",
            "{oops}",
            "..",
            "/",
            "/proc/x.zarr",
            "*",
            "nearest",
            "grid-wrap",
            "gaussian",
            "fft",
            "float16",
            "bool",
            "é",
            "a" * 300,
            [],
            {},
            [1],
            [0, 0],
            [-1, 64],
            [[1, 2], [3]],
            [[1e308, 1e308]],
            {"codec": "zstd", "level": 100},
            {"codec": "gzip", "level": -3},
            {"type": "box", "size": 0},
            {"type": "log", "sigma": 2.0, "normalize": True},
            {"type": "unsharp", "sigma": 1.0, "amount": -1e308},
            {"op": "clip", "source": "input", "min": 1.0, "max": 0.0},
        ]
    ),
    # Small, so that no valid mutation builds a kernel of millions of weights on a shared machine.
    st.integers(-100, 100),
    st.floats(-1e3, 1e3),
    st.text(max_size=6),
)
INSERTED = st.sampled_from(
    [
        b"\x00",
        b"\x07",
        b"\xff\xfe",
        b"{",
        b"[",
        b"]",
        b",",
        b":",
        b"&a ",
        b"*a",
        b"!!python/object:os.system ",
        b"\n",
        b"\n  ",
        b"\t",
        b'"',
        b"'",
        b"#",
        b"9" * 40,
        b"-",
        b"=",
        b"\\u0000",
    ]
)


class Hang(BaseException):
    """A call ran past HANG_SECONDS (a BaseException, so no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(folder: Path) -> set[tuple[str, int, int]]:
    """Every file under `folder` with its size and modification time, and every folder."""
    seen = set()
    for root, folders, files in os.walk(folder):
        for name in folders:
            seen.add((os.path.relpath(os.path.join(root, name), folder), -1, -1))
        for name in files:
            stat = os.stat(os.path.join(root, name))
            seen.add((os.path.relpath(os.path.join(root, name), folder), stat.st_size, stat.st_mtime_ns))
    return seen


def check_cli(config: Path, folder: Path) -> None:
    """Run validate and run --dry-run on `config`: exit 0, or 2 and one error line; `folder` unchanged."""
    before = snapshot(folder)
    for command in (["validate", str(config)], ["run", "--dry-run", str(config)]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_hang():
            code = main(command)
        text = err.getvalue()
        if code == 0:
            assert text == "", text
        else:
            assert code == 2, (command, code, text)
            assert text.count("\n") == 1, text
            assert text.startswith("error: "), text
            assert "Traceback" not in text
        assert snapshot(folder) == before, f"{command} wrote into {folder}"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of configs/ (its data, kernel files and configs) with no outputs in it."""
    folder = tmp_path_factory.mktemp("configs")
    shutil.copytree(CONFIGS, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("out"))
    return folder


def load(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".toml":
        return tomllib.loads(text)
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def key_paths(value: Any, key: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in nested dicts and lists, the root included."""
    paths = [key]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        paths += key_paths(item, (*key, name))
    return paths


def mutate(data: Any, draw: Any) -> Any:
    """One mutation of the config data at a drawn key path."""
    paths = key_paths(data)
    key = draw(st.sampled_from(paths[1:]))
    parent = data
    for part in key[:-1]:
        parent = parent[part]
    kind = draw(st.sampled_from(["replace", "replace", "drop", "add", "repeat"]))
    if kind == "replace":
        parent[key[-1]] = draw(HOSTILE)
    elif kind == "drop":
        del parent[key[-1]]
    elif kind == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["sigma", "size", "mode", "chunks", "dtype", "extra", "path"]))] = draw(
            HOSTILE
        )
    elif kind == "add":
        parent.append(draw(HOSTILE))
    elif isinstance(parent, list):
        parent.insert(key[-1], parent[key[-1]])
    else:
        parent[key[-1]] = [parent[key[-1]], parent[key[-1]]]
    return data


# Bounded so the two tests stay under a minute on 2 cores (each example runs 2 commands);
# CONVFLOW_FUZZ_EXAMPLES=1000 fuzzes longer, locally.
FUZZ = settings(
    max_examples=int(os.environ.get("CONVFLOW_FUZZ_EXAMPLES", "25")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@seed(20261203)
@FUZZ
@given(name=st.sampled_from(SHIPPED), data=st.data(), as_json=st.booleans())
def test_mutated_config_data_exit_0_or_2_with_one_error_line(
    shipped: Path, name: str, data: st.DataObject, as_json: bool
) -> None:
    config = load(shipped / name)
    for _ in range(data.draw(st.integers(1, 3))):
        config = mutate(config, data.draw)
    path = shipped / f"mutated{'.json' if as_json else '.yaml'}"
    # allow_nan: inf and nan are part of the hostility (JSON then holds Infinity and NaN).
    path.write_text(json.dumps(config) if as_json else yaml.safe_dump(config))
    try:
        check_cli(path, shipped)
    finally:
        path.unlink()


@seed(20261203)
@FUZZ
@given(name=st.sampled_from(SHIPPED), data=st.data())
def test_mutated_config_bytes_exit_0_or_2_with_one_error_line(
    shipped: Path, name: str, data: st.DataObject
) -> None:
    raw = bytearray((shipped / name).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        kind = data.draw(st.sampled_from(["cut", "insert", "replace"]))
        if kind == "cut":
            del raw[at : at + data.draw(st.integers(1, 40))]
        elif kind == "insert":
            raw[at:at] = data.draw(INSERTED)
        else:
            raw[at : at + 1] = data.draw(INSERTED)
    path = shipped / f"mutated{Path(name).suffix}"
    path.write_bytes(bytes(raw))
    try:
        check_cli(path, shipped)
    finally:
        path.unlink()


def test_hostile_configs_in_real_subprocesses(shipped: Path) -> None:
    """A few of the worst inputs through ``python -m convflow``: one line, exit 2, nothing written."""
    bomb = ["l0: &l0 [" + ", ".join(["lol"] * 9) + "]"]
    bomb += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    text = (shipped / "edges_2d.yaml").read_text()
    hostile = {
        "bomb.yaml": "x:\n" + "".join(f"  {line}\n" for line in bomb) + text,
        "deep.json": '{"input": ' + "[" * 10_000 + "]" * 10_000 + "}",
        "tiny_sigma.yaml": text.replace("sigma: 1.5", "sigma: 1.0e-300"),
        "syntax.yaml": text + "\x07\n",
    }
    before = snapshot(shipped)
    for name, content in hostile.items():
        (shipped / name).write_text(content)
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    commands = [[name, verb] for name in hostile for verb in (["validate"], ["run", "--dry-run"])]
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "convflow", *verb, name],
            cwd=shipped,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, verb in commands
    ]
    for process, command in zip(running, commands, strict=True):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 2, (command, err)
        assert err.count("\n") == 1, (command, err)
        assert err.startswith("error: "), (command, err)
    for name in hostile:
        (shipped / name).unlink()
    assert snapshot(shipped) == before
