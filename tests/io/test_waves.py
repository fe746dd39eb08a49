"""Outputs are computed in waves of neighbouring blocks (io/_write.py), which bounds memory."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr

import convflow
from convflow.io import _write, write_output


def _stores(*arrays: da.Array):
    return [(a, a, list(np.ndindex(*a.numblocks))) for a in arrays]


def test_waves_cover_every_block_once_in_c_order():
    x = da.zeros((10, 6, 4), chunks=(3, 2, 4), dtype=np.float32)
    (store,) = _stores(x)
    waves = _write.waves([store], wave_bytes=2 * 6 * 4 * 4 * 3)  # two rows of blocks
    seen = [b for wave in waves for _, blocks in wave for b in blocks]
    assert sorted(seen) == sorted(store[2])
    assert len(seen) == len(set(seen))
    assert [{b[0] for _, blocks in wave for b in blocks} for wave in waves] == [{0, 1}, {2, 3}]


def test_a_wave_is_a_tile_when_one_row_exceeds_the_budget():
    x = da.zeros((4, 8, 8), chunks=(2, 2, 8), dtype=np.uint8)
    waves = _write.waves(_stores(x), wave_bytes=2 * 2 * 8 * 2)  # two blocks
    assert all(len(blocks) == 2 for wave in waves for _, blocks in wave)
    assert len(waves) == x.npartitions // 2


def test_outputs_with_other_chunks_go_to_the_wave_of_their_first_voxel():
    a = da.zeros((8, 4), chunks=(2, 4), dtype=np.uint8)
    b = da.zeros((8, 4), chunks=(4, 4), dtype=np.uint8)
    waves = _write.waves(_stores(a, b), wave_bytes=2 * 4 * 2)  # two rows of a
    second = [[blocks for writes, blocks in wave if writes is b] for wave in waves]
    assert second == [[[(0, 0)]], [[(1, 0)]]]


def test_writing_in_many_waves_gives_the_bytes_of_one_wave(tmp_path, monkeypatch):
    image = da.from_array(np.random.default_rng(3).random((12, 10, 8), dtype=np.float32), chunks=(2, 5, 4))
    result = convflow.convolve(image, np.ones((3, 3, 3)) / 27, mode="mirror")
    write_output(result, tmp_path / "one.zarr")
    monkeypatch.setattr(_write, "WAVE_BYTES", 2 * 5 * 4 * 4)  # one block per wave
    write_output(result, tmp_path / "many.zarr")
    one, many = zarr.open_array(tmp_path / "one.zarr")[...], zarr.open_array(tmp_path / "many.zarr")[...]
    np.testing.assert_array_equal(one, many)
    expected = ndi.convolve(image.compute().astype(np.float64), np.ones((3, 3, 3)) / 27, mode="mirror")
    np.testing.assert_allclose(many, expected, atol=1e-5)


@pytest.mark.parametrize("wave_bytes", [1, 10**12])
def test_wave_size_never_drops_a_block(wave_bytes):
    x = da.zeros((5, 7), chunks=(2, 3), dtype=np.float64)
    (store,) = _stores(x)
    seen = [b for wave in _write.waves([store], wave_bytes) for _, blocks in wave for b in blocks]
    assert sorted(seen) == sorted(store[2])
