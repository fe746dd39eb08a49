"""TIFF outputs staged in a zarr array beside them (convflow/io/_write.py, _target.py): a TIFF run
stopped at any point, SIGKILL included, is finished by --resume computing only the blocks not yet
stored, and the TIFF's tiles equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from io_contract import SYNC, Boom, chunk_digest, counting, failing, tile_digest, tree_digest
from test_cli_kill import start_and_kill

from convflow.errors import InputFormatError, OutputExistsError, OutputPathError, ResumeError
from convflow.io import _tiff, check_output, describe, open_input, write_output, write_outputs
from convflow.io._tiff import staging_path

CONFIG = {"config": {"sigma": 1}}
CHUNKS = (2, 16, 16)  # 3 x 3 x 2 = 18 blocks of the volume below


@pytest.fixture
def volume() -> np.ndarray:
    """A small uint16 volume whose every value differs, of 18 blocks of CHUNKS (edge blocks partial)."""
    return (np.arange(6 * 40 * 24, dtype=np.uint16) * 7 % 60000).reshape(6, 40, 24)


@pytest.fixture
def clean(tmp_path: Path, volume: np.ndarray) -> str:
    """The TIFF of an uninterrupted run."""
    path = str(tmp_path / "clean.tif")
    write_output(da.from_array(volume, chunks=CHUNKS), path, chunks=(1, 16, 16), provenance=CONFIG)
    return path


@pytest.fixture
def stopped(tmp_path: Path, volume: np.ndarray) -> str:
    """A TIFF output whose run stopped at block (1, 1, 0): its staging array holds the blocks before it."""
    path = str(tmp_path / "out.tif")
    with pytest.raises(Boom):
        write_output(
            failing(volume, CHUNKS, (1, 1, 0)),
            path,
            chunks=(1, 16, 16),
            provenance=CONFIG,
            compute_kwargs=SYNC,
        )
    return path


def described_without_times(path: str) -> dict[str, Any]:
    """Return a TIFF's JSON description with the record's times left out."""
    with tifffile.TiffFile(path) as tif:
        description = json.loads(tif.pages[0].description)
    for key in ("started", "finished", "resumed"):
        description["convflow"].pop(key, None)
    return description


def assert_same_tiff(path: str, expected: str) -> None:
    """Same pixels, same stored tiles, same description but for times; no staging array left."""
    np.testing.assert_array_equal(tifffile.imread(path), tifffile.imread(expected))
    assert tile_digest(path) == tile_digest(expected)
    assert described_without_times(path) == described_without_times(expected)
    assert not Path(staging_path(path)).exists()


# ---- resume computes only the blocks not yet stored --------------------------------------------


def test_an_interrupted_tiff_run_leaves_only_its_staging_array(stopped: str) -> None:
    assert not Path(stopped).exists()
    stored = chunk_digest(staging_path(stopped))
    assert 0 < len(stored) < 18
    assert describe(stopped)["incomplete"] is True
    assert describe(stopped)["convflow"]["config"] == CONFIG["config"]
    with pytest.raises(InputFormatError, match=r"out\.tif: is an incomplete convflow output.*--resume"):
        open_input(stopped)


def test_resume_computes_only_missing_blocks_to_the_clean_tiles(
    stopped: str, clean: str, volume: np.ndarray
) -> None:
    stored = len(chunk_digest(staging_path(stopped)))
    seen: list[tuple[int, ...]] = []
    report = write_output(
        counting(volume, CHUNKS, seen), stopped, chunks=(1, 16, 16), provenance=CONFIG, resume=True
    )
    assert (report.status, report.blocks_total) == ("resumed", 18)
    assert report.blocks_written == len(seen) == 18 - stored
    assert_same_tiff(stopped, clean)
    record = describe(stopped)["convflow"]
    assert "incomplete" not in record
    assert len(record["resumed"]) == 1


@pytest.mark.parametrize(
    "cut", [None, 0, 8, 200], ids=["tiles-written", "empty-file", "header-only", "cut-short"]
)
def test_a_run_stopped_while_writing_the_tiff_resumes_without_computing(
    tmp_path: Path, clean: str, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch, cut: int | None
) -> None:
    out = str(tmp_path / "out.tif")

    def stop(path: str, record: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(_tiff, "update_tiff_record", stop)  # the last step before the staging goes
        with pytest.raises(KeyboardInterrupt):
            write_output(da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG)
    assert len(chunk_digest(staging_path(out))) == 18
    if cut is not None:
        with open(out, "r+b") as file:
            file.truncate(cut)
    else:
        assert describe(out)["incomplete"] is True
    with pytest.raises(OutputExistsError, match=r"incomplete output of an interrupted run; pass --resume"):
        check_output(out, volume, chunks=(1, 16, 16), provenance=CONFIG)

    seen: list[tuple[int, ...]] = []
    report = write_output(
        counting(volume, CHUNKS, seen), out, chunks=(1, 16, 16), provenance=CONFIG, resume=True
    )
    assert (report.status, report.blocks_written, seen) == ("resumed", 0, [])
    assert_same_tiff(out, clean)


def test_an_incomplete_tiff_without_staging_is_computed_again(
    tmp_path: Path, clean: str, volume: np.ndarray
) -> None:
    # What a killed run of a convflow before staging left: a TIFF marked incomplete, nothing else.
    out = str(tmp_path / "out.tif")
    write_output(da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG)
    record = {**describe(out)["convflow"], "incomplete": True}
    _tiff.update_tiff_record(out, record)
    report = write_output(
        da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG, resume=True
    )
    assert (report.status, report.blocks_written) == ("resumed", 18)
    assert_same_tiff(out, clean)


def test_resume_after_the_tiff_was_finished_removes_the_staging_left(
    tmp_path: Path, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch, exploding: Any
) -> None:
    out = str(tmp_path / "out.tif")
    with monkeypatch.context() as patched:
        patched.setattr("convflow.io._write._remove", lambda path: None)  # stop before the staging goes
        write_output(da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG)
    assert Path(staging_path(out)).is_dir()
    before = tree_digest(out)
    with pytest.raises(OutputExistsError, match=r"out\.tif: already exists; pass --overwrite"):
        check_output(out, volume, provenance=CONFIG)
    report = write_output(exploding(volume.shape, chunks=CHUNKS), out, provenance=CONFIG, resume=True)
    assert (report.status, report.blocks_written) == ("complete", 0)
    assert tree_digest(out) == before
    assert not Path(staging_path(out)).exists()


# ---- the safety rules hold for the staging array -----------------------------------------------


def test_a_plain_rerun_onto_staging_refuses_naming_resume_and_overwrite(stopped: str, exploding: Any) -> None:
    before = tree_digest(staging_path(stopped))
    with pytest.raises(
        OutputExistsError,
        match=r"out\.tif: is an incomplete output of an interrupted run; pass --resume.*--overwrite",
    ):
        write_output(exploding((6, 40, 24), chunks=CHUNKS), stopped, chunks=(1, 16, 16), provenance=CONFIG)
    assert tree_digest(staging_path(stopped)) == before


def test_resume_with_another_config_is_refused(stopped: str, volume: np.ndarray) -> None:
    with pytest.raises(ResumeError, match=r"out\.tif: cannot resume: config\.sigma: stored 1, this run 2"):
        check_output(
            stopped,
            da.from_array(volume, CHUNKS),
            chunks=(1, 16, 16),
            provenance={"config": {"sigma": 2}},
            resume=True,
        )
    with pytest.raises(ResumeError, match=r"output\.chunks: stored \[1, 16, 16\], this run \[1, 32, 32\]"):
        check_output(
            stopped, da.from_array(volume, CHUNKS), chunks=(1, 32, 32), provenance=CONFIG, resume=True
        )


def test_overwrite_removes_the_staging_array(stopped: str, volume: np.ndarray) -> None:
    seen: list[tuple[int, ...]] = []
    report = write_output(
        counting(volume, CHUNKS, seen), stopped, chunks=(1, 16, 16), provenance=CONFIG, overwrite=True
    )
    assert (report.status, report.blocks_written, len(seen)) == ("written", 18, 18)
    assert not Path(staging_path(stopped)).exists()
    np.testing.assert_array_equal(open_input(stopped).array.compute(**SYNC), volume)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_file_at_the_staging_path_is_refused(tmp_path: Path, overwrite: bool) -> None:
    out = tmp_path / "out.tif"
    foreign = Path(staging_path(str(out)))
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(
        OutputExistsError, match=r"out\.tif\.convflow-partial\.zarr: exists and is not convflow's"
    ):
        write_output(np.zeros((16, 16)), str(out), overwrite=overwrite)
    zarr.create_array(str(tmp_path / "other.tif.convflow-partial.zarr"), data=np.zeros(3))
    with pytest.raises(OutputExistsError, match=r"not convflow's staging array for .*other\.tif"):
        check_output(str(tmp_path / "other.tif"), resume=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_staging_path_that_is_the_input_is_refused(tmp_path: Path) -> None:
    source = str(tmp_path / "x.tif.convflow-partial.zarr")
    zarr.create_array(source, data=np.zeros((16, 16)))
    with pytest.raises(OutputPathError, match=r"x\.tif\.convflow-partial\.zarr: is the input"):
        check_output(str(tmp_path / "x.tif"), inputs=[source])


# ---- TIFFs join the zarr outputs' compute ------------------------------------------------------


def test_a_tiff_and_a_zarr_of_one_result_compute_each_block_once(tmp_path: Path, volume: np.ndarray) -> None:
    seen: list[tuple[int, ...]] = []
    result = counting(volume, CHUNKS, seen) * 2
    jobs = [(result, str(tmp_path / "a.tif"), {"dtype": "uint16"}), (result, str(tmp_path / "a.zarr"), {})]
    reports = write_outputs(jobs, compute_kwargs=SYNC)
    assert [r.blocks_written for r in reports] == [18, 18]
    assert sorted(seen) == sorted(np.ndindex(3, 3, 2))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), (volume * 2).astype(np.uint16))


def test_tiffs_of_stacked_files_beside_the_stack_resume(tmp_path: Path) -> None:
    # As a glob input with {stem} outputs and a stacked output runs: a TIFF per file, a slice of the stack.
    stack = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, 3, 32, 32)
    paths = [str(tmp_path / f"scan_{n}_clean.tif") for n in range(2)]
    result = da.from_array(stack, chunks=(1, 1, 16, 32)) * 2
    jobs = [(result[n], path, {"provenance": CONFIG}) for n, path in enumerate(paths)]
    jobs.append((result, str(tmp_path / "all.zarr"), {"provenance": CONFIG}))
    reports = write_outputs(jobs, compute_kwargs=SYNC)
    assert [r.status for r in reports] == ["written"] * 3
    for n, path in enumerate(paths):
        np.testing.assert_array_equal(tifffile.imread(path), stack[n] * 2)
        assert not Path(staging_path(path)).exists()

    again = [str(tmp_path / f"again_{n}.tif") for n in range(2)]
    stopping = failing(stack, (1, 1, 16, 32), (1, 1, 0, 0)) * 2
    with pytest.raises(Boom):
        write_outputs(
            [(stopping[n], p, {"provenance": CONFIG}) for n, p in enumerate(again)], compute_kwargs=SYNC
        )
    seen: list[tuple[int, ...]] = []
    counted = counting(stack, (1, 1, 16, 32), seen) * 2
    reports = write_outputs(
        [(counted[n], p, {"provenance": CONFIG}) for n, p in enumerate(again)],
        resume=True,
        compute_kwargs=SYNC,
    )
    assert [r.status for r in reports] == ["resumed", "resumed"]
    assert sum(r.blocks_written for r in reports) == len(seen) < 12
    for n, path in enumerate(again):
        assert tile_digest(path) == tile_digest(paths[n])


# ---- a real `convflow run` killed with SIGKILL -------------------------------------------------

SHAPE, BLOCK = (16, 32, 32), 4
BLOCKS = (SHAPE[0] // BLOCK) * (SHAPE[1] // BLOCK) * (SHAPE[2] // BLOCK)
KILL_AFTER = 16

SLOW_YAML = """\
input: {path: in.zarr}
kernels:
  smooth: {type: box, size: 3}
stages:
  - name: smoothed
    steps: [{kernel: smooth, mode: reflect}]
outputs:
  - {stage: smoothed, path: out/smoothed.tif, dtype: uint16, chunks: [1, 16, 16]}
"""


def convflow_run(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``convflow run p.yaml`` on the synchronous scheduler in `cwd`."""
    command = [sys.executable, "-m", "convflow", "run", "p.yaml", "--scheduler", "synchronous", *flags]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_a_tiff_run_killed_with_sigkill_resumes_to_the_clean_tiles(tmp_path: Path, rng: Any) -> None:
    killed, reference = tmp_path / "killed", tmp_path / "clean"
    data = (rng.random(SHAPE) * 60000).astype(np.uint16)
    for folder in (killed, reference):
        folder.mkdir()
        zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(BLOCK,) * 3)
        (folder / "p.yaml").write_text(SLOW_YAML)
    output = killed / "out" / "smoothed.tif"
    staging = Path(staging_path(str(output)))

    stored = len(start_and_kill(killed, staging, kill_after=KILL_AFTER))
    assert KILL_AFTER <= stored < BLOCKS
    assert not output.exists()

    plain = convflow_run(killed)
    assert plain.returncode == 2
    assert "--resume" in plain.stderr
    assert "--overwrite" in plain.stderr

    resumed = convflow_run(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    written, total = map(int, re.search(r"\((\d+)/(\d+) blocks\)", resumed.stdout).groups())  # type: ignore[union-attr]
    assert (written, total) == (BLOCKS - stored, BLOCKS)
    clean = convflow_run(reference, "-q")
    assert clean.returncode == 0, clean.stderr
    expected = reference / "out" / "smoothed.tif"
    np.testing.assert_array_equal(tifffile.imread(output), tifffile.imread(expected))
    assert tile_digest(output) == tile_digest(expected)
    assert not staging.exists()
    assert "resumed" in describe(output)["convflow"]

    again = convflow_run(killed, "--resume")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout


def test_a_run_stopped_while_removing_the_staging_array_resumes_and_leaves_nothing(
    tmp_path: Path, clean: str, volume: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A SIGKILL in the rmtree of the staging array (its zarr.json gone, chunks left) made every later
    # run refuse the output: "exists and is not convflow's staging array" (found by tests/faults, #15).
    out = str(tmp_path / "out.tif")

    remove = shutil.rmtree

    def cut_short(path: str, *args: Any, **kwargs: Any) -> None:
        if "convflow-partial.zarr" not in str(path):  # another folder (a scratch folder) goes as ever
            return remove(path, *args, **kwargs)
        os.remove(os.path.join(path, "zarr.json"))  # rmtree's order is the file system's
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr("convflow.io._write.shutil.rmtree", cut_short)
        with pytest.raises(KeyboardInterrupt):
            write_output(da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG)
    report = write_output(
        da.from_array(volume, chunks=CHUNKS), out, chunks=(1, 16, 16), provenance=CONFIG, resume=True
    )
    assert report.status == "complete"
    assert_same_tiff(out, clean)
    assert sorted(os.listdir(tmp_path)) == ["clean.tif", "out.tif"]
