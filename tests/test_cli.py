"""Tests for convflow.cli: the real ``convflow`` command in subprocesses, on small zarr inputs.

Each subprocess costs about a second of imports, so independent commands run
side by side (`run_all`) and related checks share one test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import scipy.ndimage as ndi
import tifffile
import yaml
import zarr

from convflow import __version__ as convflow_version
from convflow import cli, kernels
from convflow.cli import main
from convflow.engine import _methods

PIPELINE_YAML = """\
input: {path: in.zarr}
kernels:
  smooth: {type: gaussian, sigma: 1.0}
  gx: {type: sobel, axis: x}
  gy: {type: sobel, axis: y}
stages:
  - name: smoothed
    steps: [{kernel: smooth}]
  - name: dx
    source: smoothed
    steps: [{kernel: gx, mode: nearest}]
  - name: dy
    source: smoothed
    steps: [{kernel: gy, mode: nearest}]
  - name: edges
    combine: {op: magnitude, sources: [dx, dy]}
outputs:
  - {stage: edges, path: out/edges.zarr}
  - {stage: smoothed, path: out/smoothed.zarr, dtype: uint16}
"""

PIPELINE_TOML = """\
[input]
path = "in.zarr"

[kernels]
smooth = {type = "gaussian", sigma = 1.0}
gx = {type = "sobel", axis = "x"}
gy = {type = "sobel", axis = "y"}

[[stages]]
name = "smoothed"
steps = [{kernel = "smooth"}]

[[stages]]
name = "dx"
source = "smoothed"
steps = [{kernel = "gx", mode = "nearest"}]

[[stages]]
name = "dy"
source = "smoothed"
steps = [{kernel = "gy", mode = "nearest"}]

[[stages]]
name = "edges"
combine = {op = "magnitude", sources = ["dx", "dy"]}

[[outputs]]
stage = "edges"
path = "out/edges.zarr"

[[outputs]]
stage = "smoothed"
path = "out/smoothed.zarr"
dtype = "uint16"
"""


def run_all(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run ``python -m convflow ARGS`` for each command side by side; return them in order."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "convflow", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    for process, args in zip(running, commands, strict=True):
        out, err = process.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def convflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_all([list(args)], cwd)[0]


def is_one_error_line(result: subprocess.CompletedProcess[str]) -> bool:
    """Whether stderr is exactly one ``error: ...`` line, no traceback."""
    lines = result.stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr


@pytest.fixture
def project(tmp_path: Path, rng: np.random.Generator) -> Path:
    """A folder with a 24 x 30 uint16 zarr input (8 x 8 chunks) and the pipeline as p.yaml."""
    data = (rng.random((24, 30)) * 1000).astype(np.uint16)
    array = zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(8, 8), dtype=data.dtype)
    array[...] = data
    (tmp_path / "p.yaml").write_text(PIPELINE_YAML)
    return tmp_path


def expected_outputs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline by scipy.ndimage on the whole array, in float64: (edges, smoothed)."""
    x = zarr.open_array(str(folder / "in.zarr"))[...].astype(np.float64)
    smoothed = ndi.convolve(x, kernels.get("gaussian", sigma=1.0).values)
    dx = ndi.convolve(smoothed, kernels.get("sobel", axis=-1).values, mode="nearest")
    dy = ndi.convolve(smoothed, kernels.get("sobel", axis=-2).values, mode="nearest")
    return np.hypot(dx, dy), smoothed


def read(path: Path) -> np.ndarray:
    return zarr.open_array(str(path))[...]


def record(path: Path) -> dict:
    return dict(zarr.open_array(str(path)).attrs)["convflow"]


def test_run_matches_scipy_records_provenance_and_never_overwrites_by_itself(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert in_process("run", "p.yaml", "--dry-run") == 0
    dry = capsys.readouterr().out
    assert "dry run: nothing computed, nothing written" in dry
    assert "stage   smoothed <- input" in dry
    assert not (project / "out").exists()

    result = convflow("run", "p.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert "edges.zarr" in result.stdout
    assert "chunks (100%), " in result.stderr  # not a terminal: plain progress lines
    assert "done in" in result.stderr
    edges, smoothed = expected_outputs(project)
    got = read(project / "out" / "edges.zarr")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, edges, rtol=0, atol=1e-5 * 8 * np.abs(smoothed).max())
    rounded = read(project / "out" / "smoothed.zarr")
    assert rounded.dtype == np.uint16
    assert np.abs(rounded.astype(np.float64) - smoothed).max() <= 0.5 + 1e-3
    first = record(project / "out" / "edges.zarr")
    assert "incomplete" not in first
    assert first["finished"] >= first["started"]
    assert first["stage"] == "edges"
    assert first["config"]["stages"][3]["combine"] == {"op": "magnitude", "sources": ["dx", "dy"]}
    assert first["kernels"]["gx"]["shape"] == [3, 3]
    (source,) = first["inputs"]
    assert source["path"] == str(project / "in.zarr")
    assert (source["shape"], source["dtype"]) == ([24, 30], "uint16")

    capsys.readouterr()
    assert in_process("run", "p.yaml") == 2
    again = capsys.readouterr().err
    assert again.startswith("error: p.yaml line 18, outputs[0].path: ")
    assert "already exists; pass --overwrite" in again
    assert in_process("run", "p.yaml", "--overwrite", "--dry-run") == 0
    assert "out/edges.zarr (zarr): float32, chunks (8, 8), replace" in capsys.readouterr().out
    assert record(project / "out" / "edges.zarr") == first  # nothing rewritten

    overwritten = convflow("run", "p.yaml", "--overwrite", "--quiet", cwd=project)
    assert overwritten.returncode == 0, overwritten.stderr
    assert overwritten.stdout == ""
    assert overwritten.stderr == ""
    assert record(project / "out" / "edges.zarr")["started"] >= first["started"]
    np.testing.assert_array_equal(read(project / "out" / "edges.zarr"), got)


def test_yaml_toml_and_json_configs_give_byte_identical_outputs(project):
    data = yaml.safe_load(PIPELINE_YAML)
    (project / "p.json").write_text(json.dumps(data, indent=2))
    (project / "p.toml").write_text(PIPELINE_TOML)
    for name in ("yaml", "toml", "json"):
        # One folder each, so the configs stay the same text apart from their syntax.
        (project / name).mkdir()
        (project / name / "in.zarr").symlink_to(project / "in.zarr")
        os.replace(project / f"p.{name}", project / name / f"p.{name}")
    results = run_all(
        [
            ["run", "yaml/p.yaml"],
            ["run", "toml/p.toml", "--scheduler", "synchronous"],
            ["run", "json/p.json", "--scheduler", "processes"],
        ],
        project,
    )
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    for output in ("edges.zarr", "smoothed.zarr"):
        arrays = [read(project / name / "out" / output) for name in ("yaml", "toml", "json")]
        assert arrays[0].tobytes() == arrays[1].tobytes() == arrays[2].tobytes()


def test_run_failing_while_computing_exits_1_and_resume_finishes_it(project, capsys, monkeypatch):
    chunk = project / "in.zarr" / "c" / "1" / "2"
    good = chunk.read_bytes()
    chunk.write_bytes(b"not a zstd frame")  # opening reads metadata only: the failure comes in compute

    failed = convflow("run", "p.yaml", cwd=project)
    assert failed.returncode == 1
    assert is_one_error_line(failed)
    assert f"error: the run failed: {chunk}: chunk (1, 2) of this array is damaged" in failed.stderr
    assert "--resume" in failed.stderr
    assert record(project / "out" / "edges.zarr")["incomplete"] is True

    chunk.write_bytes(good)
    monkeypatch.chdir(project)
    assert in_process("run", "p.yaml") == 2
    plain = capsys.readouterr().err
    assert plain.startswith("error: p.yaml line 18, outputs[0].path: ")
    assert "is an incomplete output of an interrupted run; pass --resume" in plain
    assert "--overwrite" in plain
    assert in_process("inspect", "out/edges.zarr") == 0
    assert "incomplete (a run stopped" in capsys.readouterr().out

    resumed = convflow("run", "p.yaml", "--resume", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    edges, _ = expected_outputs(project)
    np.testing.assert_allclose(read(project / "out" / "edges.zarr"), edges, rtol=1e-4, atol=1e-2)
    assert "incomplete" not in record(project / "out" / "edges.zarr")

    capsys.readouterr()
    assert in_process("run", "p.yaml", "--resume") == 0
    assert "every output is complete: nothing to do" in capsys.readouterr().out


# (what the bad config changes, text the error must contain). Each is run as its own config.
MISTAKES = [
    (("input: {path: in.zarr}", "input: {path: in.zarr, chunk: [8, 8]}"), "input.chunk: unknown key 'chunk'"),
    (("sigma: 1.0", "sigma: wide"), "kernels.smooth.sigma"),
    (("input: {path: in.zarr}", "input: {path: missing.zarr}"), "input.path: no file or folder at"),
    (("type: gaussian", "type: gausian"), "no kernel type 'gausian'. Did you mean 'gaussian'?"),
    (("steps: [{kernel: smooth}]", "steps: [{kernel: smoth}]"), "stages[0].steps[0].kernel: no kernel named"),
    (("source: smoothed\n    steps: [{kernel: gx", "source: dy\n    steps: [{kernel: gx"), "comes later"),
    (("sources: [dx, dy]", "sources: [dx, dz]"), "stages[3].combine.sources[1]: no stage named 'dz'"),
    (("{stage: edges, path", "{stage: edgs, path"), "outputs[0].stage: no stage named 'edgs'"),
    (("sigma: 1.0}", "sigma: 1.0, ndim: 3}"), "kernels.smooth: kernel 'smooth' has 3 axes"),
    (("dtype: uint16}", "dtype: uint16, chunks: [8]}"), "outputs[1].chunks: chunks=(8,) needs one entry"),
    (("outputs:", "execution: {scheduler: slurm}\noutputs:"), "a slurm job needs execution.cores"),
]


def test_run_failing_unexpectedly_while_computing_exits_1_naming_the_error(project, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(_methods, "correlate_block", broken)
    monkeypatch.chdir(project)
    assert in_process("run", "p.yaml") == 1
    message = capsys.readouterr().err
    assert message.startswith("error: the run failed while computing: RuntimeError: a bug (--verbose shows")
    assert "rerun with --resume" in message
    assert "Traceback" not in message
    assert record(project / "out" / "edges.zarr")["incomplete"] is True


def in_process(*args: str) -> int:
    """``convflow ARGS`` run by `main` in this process (exit code; output left for capsys)."""
    try:
        return main(list(args))
    except SystemExit as exit:  # argparse's usage errors
        return int(exit.code or 0)


def test_a_chunk_that_decodes_short_fails_every_run_the_same_way(project, capsys, monkeypatch):
    # On main each run used uninitialised memory for the missing bytes: three runs, three outputs,
    # exit 0 each (#15, defect 1).
    chunk = project / "in.zarr" / "c" / "1" / "2"
    chunk.write_bytes(numcodecs.Zstd(level=3).encode(bytes(64)))  # a 128-byte (8, 8) uint16 chunk
    monkeypatch.chdir(project)
    for options in ((), ("--overwrite",), ("--overwrite", "--scheduler", "synchronous")):
        assert in_process("run", "p.yaml", *options) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith(f"error: the run failed: {chunk}: chunk (1, 2) of this array is damaged")
        assert "it holds 64 bytes, not 128 bytes" in err
        assert record(project / "out" / "edges.zarr")["incomplete"] is True


@pytest.mark.parametrize(("change", "expected"), MISTAKES, ids=[m[1][:30] for m in MISTAKES])
def test_config_mistakes_exit_2_with_one_line_naming_the_key(project, capsys, monkeypatch, change, expected):
    # The same main() the console script runs, in this process: a subprocess per case costs seconds.
    old, new = change
    assert old in PIPELINE_YAML
    (project / "bad.yaml").write_text(PIPELINE_YAML.replace(old, new, 1))
    monkeypatch.chdir(project)
    for verb in ("validate", "run"):
        assert in_process(verb, "bad.yaml") == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error: bad.yaml line")
        assert captured.err.count("\n") == 1
        assert expected in captured.err
    assert not (project / "out").exists()


def test_console_script_plans_inspects_and_refuses_bad_configs_in_one_line(project):
    for number in (0, 2):
        (project / f"bad{number}.yaml").write_text(PIPELINE_YAML.replace(*MISTAKES[number][0], 1))
    plan, inspect, *bad = run_all(
        [
            ["plan", "p.yaml", "--scheduler", "threads"],
            ["inspect", "in.zarr"],
            ["run", "bad0.yaml"],
            ["validate", "bad2.yaml"],
        ],
        project,
    )
    assert plan.returncode == 0, plan.stderr
    for text in ("halo y 1+1, x 1+1", "step 0: convolve gx (3, 3) over yx, mode nearest:", "estimated peak"):
        assert text in plan.stdout
    assert "edges = magnitude(dx, dy)" in plan.stdout
    assert inspect.returncode == 0, inspect.stderr
    assert "shape:  (24, 30)" in inspect.stdout
    assert "uint16" in inspect.stdout
    for result, number in zip(bad, (0, 2), strict=True):
        assert result.returncode == 2, result.stderr
        assert is_one_error_line(result), result.stderr
        assert MISTAKES[number][1] in result.stderr
    assert not (project / "out").exists()


def test_validate_kernels_inspect_and_usage(project, capsys, monkeypatch):
    monkeypatch.chdir(project)
    assert in_process("validate", "p.yaml") == 0
    assert capsys.readouterr().out.startswith(
        "ok: p.yaml: input (24, 30) uint16 axes yx; 4 stages, 2 outputs"
    )
    assert in_process("kernels") == 0
    listing = capsys.readouterr().out
    assert "params: sigma, truncate=4.0" in listing
    assert all(name in listing for name in kernels.names())
    assert in_process("inspect", "nothing.zarr") == 2
    assert capsys.readouterr().err.startswith("error: nothing.zarr: no such file")
    assert in_process("run") == 2
    assert "usage: convflow run" in capsys.readouterr().err
    assert in_process("run", "p.yaml", "--scheduler", "pbs") == 2
    assert "error: --scheduler: a pbs job needs execution.cores" in capsys.readouterr().err
    assert in_process("run", "p.yaml", "--address", "tcp://127.0.0.1:1", "--scheduler", "threads") == 2
    assert "needs the distributed scheduler" in capsys.readouterr().err
    assert not (project / "out").exists()


def test_every_verbs_help_describes_each_of_its_arguments():
    verbs = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(verbs.choices) >= {"run", "validate", "plan", "kernels", "inspect", "preview"}
    for name, parser in verbs.choices.items():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (
                    f"convflow {name}: {'/'.join(action.option_strings) or action.dest} has no help"
                )


def test_console_script_prints_the_version(project):
    script = Path(sys.executable).parent / "convflow"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout == f"convflow {convflow_version}\n"


def test_plan_shows_the_compute_dtype_a_float64_output_asks_for_and_run_honours_it(tmp_path, rng):
    # Issue #13 item 4: one stage written as float64 and as uint8 computes once, in float64.
    data = rng.integers(0, 256, (24, 30), dtype=np.uint8)
    zarr.create_array(str(tmp_path / "in.zarr"), data=data, chunks=(8, 8))
    kernel = rng.standard_normal((5, 2))
    config = {
        "input": {"path": "in.zarr"},
        "kernels": {"k": {"values": kernel.tolist()}},
        "stages": [{"name": "smooth", "steps": [{"kernel": "k", "mode": "nearest"}]}],
        "outputs": [
            {"stage": "smooth", "path": "out/smooth_u8.zarr", "dtype": "uint8"},
            {"stage": "smooth", "path": "out/smooth.zarr", "dtype": "float64"},
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
    plan = convflow("plan", "p.yaml", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "  compute float64 (outputs[1] writes it as float64), chunks (8, 8)" in plan.stdout
    run = convflow("run", "p.yaml", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    expected = ndi.convolve(data.astype(np.float64), kernel, mode="nearest")
    precise = zarr.open_array(str(tmp_path / "out/smooth.zarr"))[...]
    assert precise.dtype == np.float64
    assert np.abs(precise - expected).max() <= 1e-9 * np.abs(kernel).sum() * 255
    rounded = zarr.open_array(str(tmp_path / "out/smooth_u8.zarr"))[...]
    np.testing.assert_array_equal(rounded, np.clip(np.rint(precise), 0, 255).astype(np.uint8))


def test_glob_of_2d_tiffs_with_axes_of_each_file_runs_with_stem_outputs(tmp_path, rng):
    # Issue #13 item 6: `axes: yx` names each file's axes; the files run along a batch axis.
    (tmp_path / "scans").mkdir()
    planes = rng.integers(0, 256, (3, 12, 10), dtype=np.uint8)
    for name, plane in zip(("east", "north", "south"), planes, strict=True):  # sorted: stacking order
        tifffile.imwrite(tmp_path / "scans" / f"{name}.tif", plane, metadata=None)
    config = {
        "input": {"path": "scans/*.tif", "axes": "yx", "chunks": [1, 5, 10]},
        "kernels": {"smooth": {"type": "gaussian", "sigma": 1.0}},
        "stages": [{"name": "smooth", "steps": [{"kernel": "smooth", "mode": "nearest"}]}],
        "outputs": [
            {"stage": "smooth", "path": "out/{stem}_smooth.tif", "dtype": "uint8"},
            {"stage": "smooth", "path": "out/all.zarr", "dtype": "float64"},
        ],
    }
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({**config, "input": {"path": "scans/*.tif", "axes": "tzyx"}}, sort_keys=False)
    )
    plan, invalid = run_all([["plan", "p.yaml"], ["validate", "bad.yaml"]], tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "axes byx" in plan.stdout
    assert invalid.returncode == 2, invalid.stderr
    assert is_one_error_line(invalid), invalid.stderr
    assert (
        "bad.yaml line 3, input.axes: axes='tzyx' does not fit the glob: it stacks 3 files" in invalid.stderr
    )
    run = convflow("run", "p.yaml", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    smooth = kernels.get("gaussian", sigma=1.0).values
    expected = np.stack([ndi.convolve(p.astype(np.float64), smooth, mode="nearest") for p in planes])
    stacked = zarr.open_array(str(tmp_path / "out/all.zarr"))[...]
    assert np.abs(stacked - expected).max() <= 1e-9 * 255 * np.abs(smooth).sum()
    for index, name in enumerate(("east", "north", "south")):
        written = tifffile.imread(tmp_path / "out" / f"{name}_smooth.tif")
        np.testing.assert_array_equal(written, np.clip(np.rint(stacked[index]), 0, 255).astype(np.uint8))


SIGNAL_YAML = """\
input: {path: in.zarr}
kernels:
  k: {values: [[1, 2, 3, 4], [0, 1, 0, -1], [2, 2, 1, 1]]}
stages:
  - name: full
    steps: [{kernel: k, convention: signal, shape: full, mode: symm}]
  - name: valid
    source: input
    steps: [{kernel: k, op: correlate, shape: valid}]
outputs:
  - {stage: full, path: out/full.zarr}
  - {stage: valid, path: out/valid.tif}
"""


def test_full_and_valid_stages_are_planned_and_written_in_their_shapes(project):
    # (#13) convflow plan shows each stage's shape; the outputs have it, with scipy.signal's values.
    import scipy.signal
    import tifffile

    (project / "s.yaml").write_text(SIGNAL_YAML)
    plan, run = run_all([["plan", "s.yaml"], ["run", "s.yaml", "--quiet"]], project)
    assert plan.returncode == 0, plan.stderr
    assert "convolve k (3, 4) over yx, mode reflect, signal centring, full result" in plan.stdout
    assert "stage   full <- input: 1 step in 1 pass; halo y 1+1, x 2+1; shape (26, 33)" in plan.stdout
    assert "stage   valid <- input: 1 step in 1 pass; halo y 1+1, x 2+1; shape (22, 27)" in plan.stdout
    assert "  compute float32, chunks (9, 9)" in plan.stdout
    assert run.returncode == 0, run.stderr
    x = zarr.open_array(str(project / "in.zarr"))[...].astype(np.float64)
    k = np.array([[1, 2, 3, 4], [0, 1, 0, -1], [2, 2, 1, 1]], dtype=np.float64)
    full = zarr.open_array(str(project / "out" / "full.zarr"))[...]
    want = scipy.signal.convolve2d(x, k, "full", "symm")
    assert full.shape == want.shape == (26, 33)
    np.testing.assert_allclose(full, want, rtol=0, atol=1e-5 * 14 * np.abs(x).max())
    valid = tifffile.imread(project / "out" / "valid.tif")
    want = scipy.signal.correlate2d(x, k, "valid")
    assert valid.shape == want.shape == (22, 27)
    np.testing.assert_allclose(valid, want, rtol=0, atol=1e-5 * 14 * np.abs(x).max())
