"""Outputs are computed in waves of neighbouring blocks (io/_waves.py), which bounds memory."""

from __future__ import annotations

import threading
import weakref
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import zarr
from io_contract import SYNC, Boom, CountingStore, chunk_digest, failing_at, local_client
from zarr.storage import LocalStore

import convflow
from convflow.io import _waves, open_input, write_output, write_outputs
from convflow.io._chunks import ChunkFiles


def _stores(*arrays: da.Array):
    return [(a, a, list(np.ndindex(*a.numblocks))) for a in arrays]


def test_waves_cover_every_block_once_in_c_order():
    x = da.zeros((10, 6, 4), chunks=(3, 2, 4), dtype=np.float32)
    (store,) = _stores(x)
    waves = _waves.waves([store], wave_bytes=2 * 6 * 4 * 4 * 3)  # two rows of blocks
    seen = [b for wave in waves for _, blocks in wave for b in blocks]
    assert sorted(seen) == sorted(store[2])
    assert len(seen) == len(set(seen))
    assert [{b[0] for _, blocks in wave for b in blocks} for wave in waves] == [{0, 1}, {2, 3}]


def test_a_wave_is_a_tile_when_one_row_exceeds_the_budget():
    x = da.zeros((4, 8, 8), chunks=(2, 2, 8), dtype=np.uint8)
    waves = _waves.waves(_stores(x), wave_bytes=2 * 2 * 8 * 2)  # two blocks
    assert all(len(blocks) == 2 for wave in waves for _, blocks in wave)
    assert len(waves) == x.npartitions // 2


def test_a_wave_holds_a_block_for_every_task_that_runs_at_once():
    # One block is past the budget: with 2 threads a wave must still hold 2 blocks, or one would idle.
    x = da.zeros((8, 16, 16), chunks=(2, 16, 16), dtype=np.float32)
    assert [len(w[0][1]) for w in _waves.waves(_stores(x), wave_bytes=1)] == [1, 1, 1, 1]
    assert [len(w[0][1]) for w in _waves.waves(_stores(x), wave_bytes=1, concurrency=2)] == [2, 2]


def test_concurrency_is_what_the_scheduler_runs_at_once():
    assert _waves.concurrency({"scheduler": "synchronous"}) == 1
    assert _waves.concurrency({"scheduler": "threads", "num_workers": 3}) == 3
    with dask.config.set(num_workers=5):
        assert _waves.concurrency({}) == 5

    class Client:  # what write_outputs reads of a distributed Client
        def nthreads(self):
            return {"tcp://a": 2, "tcp://b": 4}

    assert _waves.concurrency({"scheduler": Client()}) == 6


def test_outputs_with_other_chunks_go_to_the_wave_of_their_first_voxel():
    a = da.zeros((8, 4), chunks=(2, 4), dtype=np.uint8)
    b = da.zeros((8, 4), chunks=(4, 4), dtype=np.uint8)
    waves = _waves.waves(_stores(a, b), wave_bytes=2 * 4 * 2)  # two rows of a
    second = [[blocks for writes, blocks in wave if writes is b] for wave in waves]
    assert second == [[[(0, 0)]], [[(1, 0)]]]


def test_writing_in_many_waves_gives_the_bytes_of_one_wave(tmp_path, monkeypatch):
    image = da.from_array(np.random.default_rng(3).random((12, 10, 8), dtype=np.float32), chunks=(2, 5, 4))
    result = convflow.convolve(image, np.ones((3, 3, 3)) / 27, mode="mirror")
    write_output(result, tmp_path / "one.zarr")
    monkeypatch.setattr(_waves, "WAVE_BYTES", 2 * 5 * 4 * 4)  # one block per wave
    write_output(result, tmp_path / "many.zarr")
    one, many = zarr.open_array(tmp_path / "one.zarr")[...], zarr.open_array(tmp_path / "many.zarr")[...]
    np.testing.assert_array_equal(one, many)
    expected = ndi.convolve(image.compute().astype(np.float64), np.ones((3, 3, 3)) / 27, mode="mirror")
    np.testing.assert_allclose(many, expected, atol=1e-5)


@pytest.mark.parametrize("wave_bytes", [1, 10**12])
def test_wave_size_never_drops_a_block(wave_bytes):
    x = da.zeros((5, 7), chunks=(2, 3), dtype=np.float64)
    (store,) = _stores(x)
    seen = [b for wave in _waves.waves([store], wave_bytes) for _, blocks in wave for b in blocks]
    assert sorted(seen) == sorted(store[2])


# ---- each input chunk is read once across waves (compute_waves) ---------------------------------


ROW = 4 * 16 * 16 * 4  # bytes of one row of (4, 8, 8) float32 blocks of a (.., 16, 16) volume


@pytest.fixture
def volume(tmp_path) -> tuple[np.ndarray, str]:
    """A (16, 16, 16) float32 zarr volume in (4, 8, 8) chunks: four rows of 2 x 2 chunks."""
    data = np.random.default_rng(11).random((16, 16, 16), dtype=np.float32)
    path = str(tmp_path / "in.zarr")
    zarr.create_array(path, shape=data.shape, chunks=(4, 8, 8), dtype=data.dtype)[...] = data
    return data, path


def _counted(path: str) -> tuple[da.Array, CountingStore]:
    store = CountingStore(LocalStore(path, read_only=True))
    return da.from_zarr(zarr.open_array(store=store, mode="r")), store


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_each_input_chunk_is_read_once_across_waves_on_local_schedulers(tmp_path, volume, scheduler):
    data, path = volume
    kernel = np.random.default_rng(12).random((3, 3, 3))
    image, store = _counted(path)
    jobs = [(convflow.correlate(image, kernel, mode="mirror"), tmp_path / "waves.zarr", {})]
    write_outputs(jobs, compute_kwargs={"scheduler": scheduler}, wave_bytes=ROW)  # four waves
    assert store.reads == dict.fromkeys(store.reads, 1)
    assert len(store.reads) == 4 * 2 * 2
    one = convflow.correlate(da.from_zarr(path), kernel, mode="mirror")
    write_outputs([(one, tmp_path / "one.zarr", {})], compute_kwargs=SYNC, wave_bytes=10**12)
    assert chunk_digest(tmp_path / "waves.zarr") == chunk_digest(tmp_path / "one.zarr")
    expected = ndi.correlate(data.astype(np.float64), kernel, mode="mirror")
    np.testing.assert_allclose(zarr.open_array(tmp_path / "waves.zarr")[...], expected, rtol=1e-5, atol=1e-5)


def test_outputs_sharing_a_stage_read_each_input_chunk_once(tmp_path, volume):
    data, path = volume
    image, store = _counted(path)
    smooth = convflow.convolve(image, np.ones((3, 3, 3)) / 27)
    edges = convflow.correlate(smooth, convflow.kernels.get("sobel", ndim=3, axis=0))
    jobs = [(smooth, tmp_path / "smooth.zarr", {}), (edges, tmp_path / "edges.zarr", {"dtype": "int16"})]
    write_outputs(jobs, wave_bytes=ROW)
    assert store.reads == dict.fromkeys(store.reads, 1)
    expected = ndi.convolve(data.astype(np.float64), np.ones((3, 3, 3)) / 27)
    np.testing.assert_allclose(zarr.open_array(tmp_path / "smooth.zarr")[...], expected, atol=1e-5)
    # int16 results: rounded half to even, so float32 rounding may move one by 1
    edges_expected = ndi.sobel(expected, axis=0)
    np.testing.assert_allclose(zarr.open_array(tmp_path / "edges.zarr")[...], edges_expected, atol=0.5 + 1e-3)


def test_a_resume_across_waves_reads_each_chunk_its_missing_blocks_need_once(tmp_path, volume):
    _, path = volume
    out = tmp_path / "out.zarr"
    smooth = convflow.convolve(da.from_zarr(path), np.ones((3, 3, 3)))
    with pytest.raises(Boom):  # waves 0 and 1 are stored, then block (2, 0, 0) fails
        write_outputs([(failing_at(smooth, (2, 0, 0)), out, {})], compute_kwargs=SYNC, wave_bytes=ROW)
    stored = len(chunk_digest(out))
    assert 8 <= stored < 12
    image, store = _counted(path)
    (report,) = write_outputs(
        [(convflow.convolve(image, np.ones((3, 3, 3))), out, {})], resume=True, wave_bytes=ROW
    )
    assert report.blocks_written == 16 - stored
    assert store.reads == dict.fromkeys(store.reads, 1)
    assert len(store.reads) == 3 * 2 * 2  # rows 1 to 3 of chunks: the halo of rows 2 and 3
    write_output(smooth, tmp_path / "clean.zarr", compute_kwargs=SYNC)
    assert chunk_digest(out) == chunk_digest(tmp_path / "clean.zarr")


class Tracked:
    """An array-like whose every read returns a fresh array, counted while it is alive."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = self.alive = self.peak = 0
        self._lock = threading.Lock()

    def __getitem__(self, index: Any) -> np.ndarray:
        block = self.data[index].copy()
        with self._lock:
            self.reads += 1
            self.alive += 1
            self.peak = max(self.peak, self.alive)
        weakref.finalize(block, self._freed)
        return block

    def _freed(self) -> None:
        with self._lock:
            self.alive -= 1


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_carried_chunks_are_released_once_no_later_wave_needs_them(tmp_path, scheduler):
    data = np.random.default_rng(13).random((32, 16, 16), dtype=np.float32)
    source = Tracked(data)
    image = da.from_array(source, chunks=(4, 8, 8), name="tracked", asarray=True)
    result = convflow.convolve(image, np.ones((3, 3, 3)))
    before = source.alive  # from_array read an empty slice for its meta, and keeps it
    source.reads, source.peak = 0, before
    write_outputs(
        [(result, tmp_path / "out.zarr", {})], compute_kwargs={"scheduler": scheduler}, wave_bytes=ROW
    )
    assert source.reads == 8 * 2 * 2  # eight waves, each chunk read once
    # A wave holds the rows of chunks before it and its own (carried in) and the row after it.
    assert source.peak - before <= 3 * 2 * 2
    assert source.alive == before
    expected = ndi.convolve(data.astype(np.float64), np.ones((3, 3, 3)))
    np.testing.assert_allclose(zarr.open_array(tmp_path / "out.zarr")[...], expected, rtol=1e-5)


def test_the_processes_scheduler_still_computes_every_wave(tmp_path, volume):
    data, path = volume
    result = convflow.convolve(da.from_zarr(path), np.ones((3, 3, 3)), mode="nearest")
    kwargs = {"scheduler": "processes", "num_workers": 1}  # each wave starts its own pool: seconds each
    write_outputs([(result, tmp_path / "p.zarr", {})], compute_kwargs=kwargs, wave_bytes=2 * ROW)
    write_outputs([(result, tmp_path / "one.zarr", {})], compute_kwargs=SYNC, wave_bytes=10**12)
    assert chunk_digest(tmp_path / "p.zarr") == chunk_digest(tmp_path / "one.zarr")
    expected = ndi.convolve(data.astype(np.float64), np.ones((3, 3, 3)), mode="nearest")
    np.testing.assert_allclose(zarr.open_array(tmp_path / "p.zarr")[...], expected, rtol=1e-5)


@pytest.mark.distributed
def test_a_distributed_client_still_computes_every_wave(tmp_path, volume):
    data, path = volume
    result = convflow.convolve(da.from_zarr(path), np.ones((3, 3, 3)))
    with local_client(workers=1, threads=2) as client:
        write_outputs(
            [(result, tmp_path / "d.zarr", {})], compute_kwargs={"scheduler": client}, wave_bytes=ROW
        )
    expected = ndi.convolve(data.astype(np.float64), np.ones((3, 3, 3)))
    np.testing.assert_allclose(zarr.open_array(tmp_path / "d.zarr")[...], expected, rtol=1e-5)


def test_only_the_in_process_schedulers_carry_values_between_waves():
    assert all(dask.base.get_scheduler(scheduler=name) in _waves._IN_PROCESS for name in ("threads", "sync"))
    assert dask.base.get_scheduler(scheduler="processes") not in _waves._IN_PROCESS
    with dask.config.set(scheduler="synchronous"):
        assert dask.base.get_scheduler(collections=[da.zeros(2)]) in _waves._IN_PROCESS


def test_waves_of_arrays_optimised_as_dask_compute_would_still_share_their_input_chunks(volume):
    _, path = volume
    image, store = _counted(path)
    result = convflow.convolve(image, np.ones((3, 3, 3)))
    # dask.compute fuses arrays' tasks, naming an edge chunk's task differently in each wave.
    _waves.compute_waves([[result.blocks[i]] for i in range(4)], SYNC)
    assert store.reads == dict.fromkeys(store.reads, 1)
    assert len(store.reads) == 16


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_chunks_handed_to_a_wave_are_let_go_of_once_its_blocks_that_need_them_are_done(
    tmp_path, monkeypatch, scheduler
):
    # Waves are whole rows of 16 blocks along x; row y needs chunk rows y - 1, y and y + 1, and is handed
    # y - 1 and y by the wave before. Held until the wave ended, the row before made three rows live at
    # once (48 chunks); let go of as the wave passes it, at most the two rows handed on and a few more.
    data = np.random.default_rng(14).random((4, 16, 64), dtype=np.float32)
    path = tmp_path / "in.zarr"
    zarr.create_array(path, shape=data.shape, chunks=(4, 4, 4), dtype=data.dtype)[...] = data
    live = {"now": 0, "peak": 0, "reads": 0}
    lock = threading.Lock()
    read = ChunkFiles.read

    def freed() -> None:
        with lock:
            live["now"] -= 1

    def counted(self: ChunkFiles, coords: tuple[int, ...]) -> np.ndarray:
        chunk = read(self, coords)
        with lock:
            live["now"] += 1
            live["reads"] += 1
            live["peak"] = max(live["peak"], live["now"])
        weakref.finalize(chunk if chunk.base is None else chunk.base, freed)
        return chunk

    monkeypatch.setattr(ChunkFiles, "read", counted)
    result = convflow.convolve(open_input(path).array, np.ones((3, 3, 3)))
    row = 16 * 4 * 4 * 4 * 4  # bytes of one row of (4, 4, 4) float32 blocks
    jobs = [(result, tmp_path / "out.zarr", {})]
    write_outputs(jobs, compute_kwargs={"scheduler": scheduler}, wave_bytes=row)
    assert live["reads"] == 4 * 16  # every chunk read once
    assert live["peak"] <= 2 * 16 + 12
    assert live["now"] == 0
    expected = ndi.convolve(data.astype(np.float64), np.ones((3, 3, 3)))
    np.testing.assert_allclose(zarr.open_array(tmp_path / "out.zarr")[...], expected, rtol=1e-5)
