"""Plans and runs made from block coordinates (#12): nothing made grows with the number of chunks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr

from convflow.cli import format_plan
from convflow.config import load_config
from convflow.engine._blocks import DaskSource
from convflow.io._record import write_done
from convflow.pipeline import make_plan, resolve_execution, run_plan

CONFIG = """\
input: {{path: {name}}}
kernels:
  box: {{values: {kernel}}}
stages:
  - name: summed
    steps: [{{kernel: box, mode: {mode}}}]
outputs:
  - {{stage: summed, path: out/summed.zarr, dtype: uint16, chunks: [{chunk}, {chunk}, {chunk}]}}
"""


def _config(folder: Path, name: str, mode: str = "reflect", chunk: int = 128) -> Path:
    kernel = np.ones((3, 3, 3), dtype=int).tolist()
    path = folder / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, kernel=kernel, mode=mode, chunk=chunk))
    return path


def _virtual(folder: Path, name: str, side: int) -> None:
    """A uint16 volume of side^3 in 128^3 chunks: metadata only, every chunk the fill value."""
    zarr.create_array(str(folder / name), shape=(side,) * 3, chunks=(128,) * 3, dtype=np.uint16)


def test_a_plan_of_2_to_the_48_voxels_makes_one_waves_tasks_as_for_a_smaller_volume(tmp_path):
    _virtual(tmp_path, "large.zarr", 8192)
    _virtual(tmp_path, "huge.zarr", 65536)
    large = make_plan(load_config(_config(tmp_path, "large.zarr")), strict=False)
    huge = make_plan(load_config(_config(tmp_path, "huge.zarr")), strict=False)
    assert huge.task_counts() == large.task_counts()
    counts, total = huge.task_counts()
    # A 128 MiB wave of the float32 stage is 16 blocks of 128^3 in a row; each has a padded block
    # and a filter task, and the input chunks they read are shared along the row: a few tasks per
    # block of the wave, however many chunks the volume has.
    assert counts["summed"] == 2 * 16
    assert total == 2 * 2 * 17 + 2 * 16 + 16  # in a corner: 2 x 2 rows of 17 chunks; 16 writes
    assert huge.waves() == 512**3 // 16
    assert large.waves() == 64**3 // 16


SHAPED = """\
input: {{path: {name}}}
kernels:
  box: {{values: {kernel}}}
stages:
  - name: full
    steps: [{{kernel: box, convention: signal, shape: full, mode: symm}}]
  - name: valid
    source: input
    steps: [{{kernel: box, op: correlate, shape: valid}}]
outputs:
  - {{stage: full, path: out/full.zarr, dtype: uint16}}
  - {{stage: valid, path: out/valid.zarr, dtype: uint16}}
"""


def test_full_and_valid_steps_of_2_to_the_48_voxels_make_one_waves_tasks_as_for_a_smaller_volume(tmp_path):
    # #12: a full or valid step used to build the dask graph of its whole stage.
    kernel = np.ones((3, 3, 3), dtype=int).tolist()
    plans = {}
    for side in (8192, 65536):
        _virtual(tmp_path, f"{side}.zarr", side)
        path = tmp_path / f"shaped-{side}.yaml"
        path.write_text(SHAPED.format(name=f"{side}.zarr", kernel=kernel))
        plans[side] = make_plan(load_config(path), strict=False)
    assert plans[65536].task_counts() == plans[8192].task_counts()
    counts, _ = plans[65536].task_counts()
    assert 0 < counts["full"] < 200
    assert 0 < counts["valid"] < 200
    for array in plans[65536].blocks.values():
        assert not isinstance(array, DaskSource)
        assert not any(isinstance(source, DaskSource) for source in array.inputs())
    full, valid = plans[65536].stages
    assert (full.shape, valid.shape) == ((65538,) * 3, (65534,) * 3)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", "processes"])
@pytest.mark.parametrize("mode", ["reflect", "wrap"])
def test_a_run_writes_the_bytes_zarr_python_writes_of_the_scipy_result(tmp_path, scheduler, mode):
    data = np.random.default_rng(5).integers(0, 100, (20, 12, 10), dtype=np.uint16)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(4, 6, 5), dtype=data.dtype)[
        ...
    ] = data
    config = load_config(_config(tmp_path, "in.zarr", mode=mode, chunk=4))
    plan = make_plan(config)
    run_plan(plan, resolve_execution(config, scheduler=scheduler), progress="none")
    written = zarr.open_array(str(tmp_path / "out" / "summed.zarr"))
    expected = ndi.correlate(data.astype(np.float64), np.ones((3, 3, 3)), mode=mode)  # integers: exact
    reference = zarr.create_array(
        str(tmp_path / "reference.zarr"),
        shape=data.shape,
        chunks=written.chunks,
        dtype=written.dtype,
        compressors=written.compressors,
        fill_value=written.fill_value,
    )
    reference[...] = expected.astype(np.uint16)
    assert _chunk_files(tmp_path / "out" / "summed.zarr") == _chunk_files(tmp_path / "reference.zarr")


def _chunk_files(path: Path) -> dict[str, bytes]:
    return {
        os.path.relpath(p, path): p.read_bytes()
        for p in path.rglob("*")
        if p.is_file() and p.name != "zarr.json"
    }


def test_plan_prints_the_expected_run_time_from_a_measured_cost_per_chunk(tmp_path):
    _virtual(tmp_path, "large.zarr", 8192)
    path = _config(tmp_path, "large.zarr")
    config = load_config(path)
    execution = resolve_execution(config)
    assert "time    about" not in format_plan(make_plan(config, strict=False), execution)
    # What a run stopped after 1000 chunks in 250 s leaves beside its output.
    (tmp_path / "out").mkdir()
    write_done(str(tmp_path / "out" / "summed.zarr"), "layout", 10, chunks=1000, seconds=250.0)
    text = format_plan(make_plan(config, strict=False), execution)
    assert "time    about 18.2 h for all 262144 chunks at 0.25 s a chunk" in text
    assert "16384 waves" in text  # 64^3 blocks of 128^3 float32, 16 in a 128 MiB wave
