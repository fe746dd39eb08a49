"""The contract every reader and writer of convflow.io keeps; each format subclasses it.

A read-only format subclasses ReaderContract, a writable one ReaderWriterContract
(and sets `output_format`). Each implements `write_native`, which writes an input
with zarr, tifffile or numpy directly, never with convflow, so that a convflow bug
cannot hide on both sides.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import pytest
import tifffile
from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

from convflow.errors import ArgumentError, InputFormatError, OutputExistsError
from convflow.io import check_output, describe, open_input, write_output

SYNC = {"scheduler": "synchronous"}


class Boom(Exception):
    """Raised by a block on purpose, to stop a write half-way."""


def tree_digest(path: str | Path) -> dict[str, str]:
    """Return the sha256 of every file under `path` (or of `path` itself), by relative name."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def chunk_digest(path: str | Path) -> dict[str, str]:
    """Return the sha256 of the stored chunks only (no metadata, whose times differ), by relative name.

    zarr writes a chunk to a ``*.partial`` file and renames it into place: those
    are skipped, so a writer running meanwhile cannot pull a file from under it.
    """
    path = Path(path)
    metadata = {"zarr.json", ".zarray", ".zattrs", ".zgroup"}
    chunks = sorted(p for p in path.rglob("*") if p.name not in metadata and not p.name.endswith(".partial"))
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in chunks if p.is_file()
    }


def tile_digest(path: str | Path) -> dict[str, str]:
    """Return the sha256 of every page's every stored tile (or strip) of a TIFF, and its tile shape.

    These are the bytes a resumed TIFF shares with an uninterrupted one; the
    description differs in its times.
    """
    digests = {}
    with tifffile.TiffFile(path) as tif, open(path, "rb") as file:
        digests["tile"] = str(tif.pages[0].tile)
        for number, page in enumerate(tif.pages):
            for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts, strict=True)):
                file.seek(offset)
                digests[f"{number}/{index}"] = hashlib.sha256(file.read(count)).hexdigest()
    return digests


def failing(data: np.ndarray, chunks: tuple[int, ...], fail_at: tuple[int, ...]) -> da.Array:
    """Return `data` as a dask array whose block `fail_at` raises Boom when computed."""
    return failing_at(da.from_array(data, chunks=chunks), fail_at)


def failing_at(array: da.Array, fail_at: tuple[int, ...]) -> da.Array:
    """Return `array` with its block `fail_at` raising Boom when computed."""

    def block(values: np.ndarray, block_info: Any = None) -> np.ndarray:
        if tuple(block_info[0]["chunk-location"]) == fail_at:
            raise Boom(f"block {fail_at}")
        return values

    return array.map_blocks(block, dtype=array.dtype)


def counting(data: np.ndarray, chunks: tuple[int, ...], seen: list[tuple[int, ...]]) -> da.Array:
    """Return `data` as a dask array that appends each computed block's index to `seen`."""

    def block(values: np.ndarray, block_info: Any = None) -> np.ndarray:
        seen.append(tuple(block_info[0]["chunk-location"]))
        return values

    meta = np.empty((0,) * data.ndim, dtype=data.dtype)
    return da.from_array(data, chunks=chunks).map_blocks(block, dtype=data.dtype, meta=meta)


class CountingStore(WrapperStore):
    """A real zarr store that counts the reads of each stored chunk or shard (not of metadata).

    `reads` counts every read of a key, `ranges` those of a byte range only
    (a shard's index, or one chunk inside a shard).
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.reads: Counter[str] = Counter()
        self.ranges: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if key.startswith("c/"):
            with self._lock:
                self.reads[key] += 1
                if byte_range is not None:
                    self.ranges[key] += 1
        return await super().get(key, prototype, byte_range)


@contextlib.contextmanager
def local_client(workers: int, threads: int, processes: bool = False) -> Iterator[Any]:
    """A real dask.distributed LocalCluster on 127.0.0.1 and a Client of it (not the default one)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=processes,
            protocol="tcp://",
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


class ReaderContract:
    """Readers: values, dtype, axes, working chunks, errors; the input is never modified."""

    suffix: ClassVar[str] = ""
    native_axes: ClassVar[str] = "zyx"  # what open_input reports for `write_native`'s file

    def write_native(self, folder: Path, data: np.ndarray) -> str:
        """Write `data` in this format without convflow; return the path to open."""
        raise NotImplementedError

    @pytest.fixture
    def data(self) -> np.ndarray:
        """A small uint16 volume whose every value differs."""
        return (np.arange(4 * 20 * 24, dtype=np.uint16) * 7 % 60000).reshape(4, 20, 24)

    # ---- reading -------------------------------------------------------------------------------

    def test_reads_values_shape_and_dtype(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.shape == data.shape
        assert image.dtype == data.dtype
        np.testing.assert_array_equal(image.array.compute(**SYNC), data)

    def test_reports_axes_and_storage(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data))
        assert image.axes == self.native_axes
        assert image.spatial_axes == tuple(i for i, a in enumerate(image.axes) if a in "zyx")
        assert isinstance(image.codec, str)

    def test_chunks_argument_gives_working_chunks(self, tmp_path: Path, data: np.ndarray) -> None:
        image = open_input(self.write_native(tmp_path, data), chunks=(2, 8, -1))
        assert image.chunks == ((2, 2), (8, 8, 4), (24,))
        np.testing.assert_array_equal(image.array.compute(**SYNC), data)

    def test_chunks_of_the_wrong_length_are_named(self, tmp_path: Path, data: np.ndarray) -> None:
        with pytest.raises(ArgumentError, match=r"chunks=\(2, 8\) needs one entry per axis of shape"):
            open_input(self.write_native(tmp_path, data), chunks=(2, 8))

    def test_axes_argument_overrides_and_is_checked(self, tmp_path: Path, data: np.ndarray) -> None:
        path = self.write_native(tmp_path, data)
        assert open_input(path, axes="TYX").axes == "tyx"
        with pytest.raises(
            ArgumentError, match=r"axes='yx' must have one letter per axis.*shape \(4, 20, 24\)"
        ):
            open_input(path, axes="yx")
        with pytest.raises(ArgumentError, match=r"axes='xyx' repeats 'x'"):
            open_input(path, axes="xyx")

    def test_reading_leaves_the_input_untouched(self, tmp_path: Path, data: np.ndarray) -> None:
        path = self.write_native(tmp_path, data)
        on_disk = Path(path).parent if "*" in path else path  # a glob: its folder
        before = tree_digest(on_disk)
        open_input(path).array.compute(**SYNC)
        assert tree_digest(on_disk) == before

    def test_describe_names_shape_dtype_axes_and_codec(self, tmp_path: Path, data: np.ndarray) -> None:
        info = describe(self.write_native(tmp_path, data))
        assert info["shape"] == data.shape
        assert info["dtype"] == "uint16"
        assert info["axes"] == self.native_axes
        assert {"chunks", "codec", "format"} <= set(info)

    def test_missing_path_is_named(self, tmp_path: Path) -> None:
        missing = str(tmp_path / f"nothing{self.suffix}")
        with pytest.raises(FileNotFoundError, match=r"nothing"):
            open_input(missing)


class ReaderWriterContract(ReaderContract):
    """Writers too: round trips, rounding, provenance, refusal, overwrite, incomplete and resume."""

    output_format: ClassVar[str]

    def out(self, folder: Path, name: str = "out") -> str:
        """Return an output path of this format in `folder`."""
        return str(folder / f"{name}{self.suffix}")

    def test_round_trip_keeps_values_dtype_axes(self, tmp_path: Path, data: np.ndarray) -> None:
        source = open_input(self.write_native(tmp_path, data), chunks=(2, 16, 16))
        out = self.out(tmp_path)
        report = write_output(
            source.array, out, format=self.output_format, inputs=[source], compute_kwargs=SYNC
        )
        assert report.status == "written"
        back = open_input(out)
        assert back.dtype == data.dtype
        assert back.axes == source.axes
        np.testing.assert_array_equal(back.array.compute(**SYNC), data)

    def test_integer_dtype_is_rounded_half_even_and_saturated(self, tmp_path: Path) -> None:
        values = np.array([[-3.5, 0.5, 1.5, 2.5], [254.5, 255.5, 300.0, np.nan]] * 8, dtype=np.float32)
        out = self.out(tmp_path)
        write_output(da.from_array(values, chunks=(16, 4)), out, format=self.output_format, dtype="uint8")
        back = open_input(out).array.compute(**SYNC)
        assert back.dtype == np.uint8
        np.testing.assert_array_equal(back[:2], [[0, 0, 2, 2], [254, 255, 255, 0]])

    def test_provenance_is_recorded(self, tmp_path: Path, data: np.ndarray) -> None:
        source = open_input(self.write_native(tmp_path, data))
        out = self.out(tmp_path)
        given = {
            "config": {"stages": [{"name": "smooth", "sigma": 1.5}]},
            "kernels": {"g": [0.25, 0.5, 0.25]},
        }
        write_output(source.array, out, format=self.output_format, inputs=[source], provenance=given)
        record = describe(out)["convflow"]
        assert record["config"] == given["config"]
        assert record["kernels"] == given["kernels"]
        assert record["version"] == __import__("convflow").__version__
        assert record["inputs"][0]["shape"] == list(data.shape)
        assert record["inputs"][0]["dtype"] == "uint16"
        assert record["inputs"][0]["path"] == os.path.abspath(source.path)
        assert record["started"] <= record["finished"]
        assert "incomplete" not in record

    def test_existing_output_is_refused_before_compute(
        self, tmp_path: Path, data: np.ndarray, exploding: Any
    ) -> None:
        out = self.out(tmp_path)
        write_output(data, out, format=self.output_format)
        before = tree_digest(out)
        with pytest.raises(OutputExistsError, match=rf"{out}: already exists; pass --overwrite"):
            write_output(exploding(data.shape, chunks=8), out, format=self.output_format)
        assert tree_digest(out) == before

    def test_overwrite_replaces(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        write_output(data, out, format=self.output_format)
        write_output(data[::-1].copy(), out, format=self.output_format, overwrite=True)
        np.testing.assert_array_equal(open_input(out).array.compute(**SYNC), data[::-1])

    def test_interrupted_output_says_incomplete(self, tmp_path: Path, data: np.ndarray) -> None:
        out = self.out(tmp_path)
        with pytest.raises(Boom):
            write_output(
                failing(data, (2, 10, 12), (1, 1, 1)), out, format=self.output_format, compute_kwargs=SYNC
            )
        assert describe(out)["incomplete"] is True
        with pytest.raises(InputFormatError, match=r"incomplete convflow output.*--resume.*--overwrite"):
            open_input(out)
        with pytest.raises(OutputExistsError, match=r"incomplete output.*--resume.*--overwrite"):
            check_output(out, data, format=self.output_format)

    def test_resume_finishes_identical_to_a_clean_run(self, tmp_path: Path, data: np.ndarray) -> None:
        clean, out = self.out(tmp_path, "clean"), self.out(tmp_path)
        write_output(da.from_array(data, chunks=(2, 10, 12)), clean, format=self.output_format)
        with pytest.raises(Boom):
            write_output(
                failing(data, (2, 10, 12), (1, 1, 0)), out, format=self.output_format, compute_kwargs=SYNC
            )
        stored = self.stored_blocks(out)
        seen: list[tuple[int, ...]] = []
        report = write_output(counting(data, (2, 10, 12), seen), out, format=self.output_format, resume=True)
        assert report.status == "resumed"
        assert report.blocks_total == 8
        assert report.blocks_written == len(seen) == 8 - stored
        assert not describe(out)["incomplete"]
        np.testing.assert_array_equal(open_input(out).array.compute(**SYNC), data)
        assert self.comparable(out) == self.comparable(clean)

    def stored_blocks(self, out: str) -> int:
        """Return how many blocks of an interrupted output are on disk (a resume skips them)."""
        stored = len(chunk_digest(out))
        assert 0 < stored < 8, "the interrupted write should have stored some blocks, not all"
        return stored

    def comparable(self, out: str) -> dict[str, str]:
        """Return what must be byte-identical between a resumed and a clean output."""
        return chunk_digest(out)
