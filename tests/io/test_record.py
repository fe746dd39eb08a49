"""The record of finished waves beside an output (io/_record.py): a resume skips them unasked (#12)."""

from __future__ import annotations

import json
import os

import dask.array as da
import numpy as np
import pytest
import zarr
from io_contract import SYNC, Boom, chunk_digest, failing_at

import convflow
from convflow.io import write_output, write_outputs
from convflow.io._record import measured_cost, record_path

ROW = 4 * 16 * 16 * 4  # one row of (4, 8, 8) float32 blocks of a (16, 16, 16) volume: one wave


@pytest.fixture
def smooth(tmp_path) -> da.Array:
    data = np.random.default_rng(21).random((16, 16, 16), dtype=np.float32)
    path = str(tmp_path / "in.zarr")
    zarr.create_array(path, shape=data.shape, chunks=(4, 8, 8), dtype=data.dtype)[...] = data
    return convflow.convolve(da.from_zarr(path), np.ones((3, 3, 3)), mode="wrap")


def test_a_failed_run_records_the_waves_it_finished_and_a_resume_skips_them(tmp_path, smooth):
    out = tmp_path / "out.zarr"
    with pytest.raises(Boom):  # waves 0 and 1 are written, then wave 2 fails at its first block
        write_outputs([(failing_at(smooth, (2, 0, 0)), out, {})], compute_kwargs=SYNC, wave_bytes=ROW)
    with open(record_path(str(out))) as file:
        assert json.load(file)["done"] == 2
    stored = len(chunk_digest(out))
    # A chunk of a recorded wave, taken away behind the run's back, is not asked for: the record is
    # what a resume trusts for those waves, and the disk for the waves after.
    os.remove(out / "c" / "0" / "0" / "0")
    (report,) = write_outputs([(smooth, out, {})], resume=True, compute_kwargs=SYNC, wave_bytes=ROW)
    assert report.blocks_written == 16 - stored
    assert not os.path.exists(record_path(str(out)))  # a finished output keeps no record
    assert not (out / "c" / "0" / "0" / "0").exists()
    write_output(smooth, tmp_path / "clean.zarr", compute_kwargs=SYNC)
    clean = chunk_digest(tmp_path / "clean.zarr")
    del clean["c/0/0/0"]
    assert chunk_digest(out) == clean


def test_a_record_of_other_waves_is_ignored_and_every_chunk_asked_of_the_disk(tmp_path, smooth):
    out = tmp_path / "out.zarr"
    with pytest.raises(Boom):
        write_outputs([(failing_at(smooth, (2, 0, 0)), out, {})], compute_kwargs=SYNC, wave_bytes=ROW)
    os.remove(out / "c" / "0" / "0" / "0")
    (report,) = write_outputs([(smooth, out, {})], resume=True, compute_kwargs=SYNC, wave_bytes=2 * ROW)
    assert (out / "c" / "0" / "0" / "0").exists()  # other waves: the record says nothing of them
    write_output(smooth, tmp_path / "clean.zarr", compute_kwargs=SYNC)
    assert chunk_digest(out) == chunk_digest(tmp_path / "clean.zarr")
    assert report.status == "resumed"


def test_a_new_run_removes_a_stale_record(tmp_path, smooth):
    out = tmp_path / "out.zarr"
    with pytest.raises(Boom):
        write_outputs([(failing_at(smooth, (2, 0, 0)), out, {})], compute_kwargs=SYNC, wave_bytes=ROW)
    (report,) = write_outputs([(smooth, out, {})], overwrite=True, compute_kwargs=SYNC, wave_bytes=ROW)
    assert report.blocks_written == 16
    assert not os.path.exists(record_path(str(out)))


def test_the_record_keeps_the_cost_per_chunk_a_run_measured(tmp_path, smooth):
    out = tmp_path / "out.zarr"
    assert measured_cost(str(out)) is None
    with pytest.raises(Boom):
        write_outputs([(failing_at(smooth, (2, 0, 0)), out, {})], compute_kwargs=SYNC, wave_bytes=ROW)
    with open(record_path(str(out))) as file:
        record = json.load(file)
    assert record["chunks"] == 8  # the two waves finished in order, four blocks each
    assert measured_cost(str(out)) == pytest.approx(record["seconds"] / 8)
    assert record["seconds"] > 0
