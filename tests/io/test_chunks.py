"""ChunkFiles: chunk files read and written directly are byte for byte zarr's."""

from __future__ import annotations

import os
import pathlib
import pickle
import shutil
import time

import numpy as np
import pytest
import zarr
import zarr.codecs

from convflow.errors import InputFormatError
from convflow.io import _zarr, open_input
from convflow.io._chunks import ChunkFiles, read_array

SHAPE, CHUNKS = (7, 10, 5), (3, 4, 5)  # ragged along the first two axes


def make(path, zarr_format, codec, dtype, **extra):
    return _zarr.create_array(
        str(path),
        None,
        shape=SHAPE,
        dtype=np.dtype(dtype),
        chunks=CHUNKS,
        codec=codec,
        zarr_format=zarr_format,
        **extra,
    )


def files_under(path):
    return {
        os.path.relpath(os.path.join(folder, name), path): without_gzip_time(
            pathlib.Path(folder, name).read_bytes()
        )
        for folder, _, names in os.walk(path)
        for name in names
        if name not in _zarr.ZARR_METADATA
    }


def without_gzip_time(data):
    """A gzip stream's header holds the second it was written (bytes 4-7): blank it."""
    return data[:4] + bytes(4) + data[8:] if data[:2] == b"\x1f\x8b" else data


def values(dtype):
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "b":
        return rng.random(SHAPE) > 0.5
    if np.dtype(dtype).kind == "f":
        return rng.normal(0, 100, SHAPE).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, SHAPE, endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    ("zarr_format", "codec"),
    [(f, c) for f in (2, 3) for c in [("zstd", 3), ("zstd", 1), ("gzip", None), ("none", None)]]
    + [(2, ("blosc", None))],  # v2 stores numcodecs' Blosc itself; v3's BloscCodec goes through zarr
)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64", "bool"])
def test_written_files_are_zarrs_files(tmp_path, zarr_format, codec, dtype):
    data = values(dtype)
    ours, theirs = (
        make(tmp_path / "ours.zarr", zarr_format, codec, dtype),
        make(tmp_path / "theirs.zarr", zarr_format, codec, dtype),
    )
    files = ChunkFiles.of(ours)
    assert files is not None
    # Blocks of one chunk, of several chunks, and ending at the array's edge.
    for start, stop in [
        ((0, 0, 0), (3, 8, 5)),
        ((3, 0, 0), (7, 4, 5)),
        ((3, 4, 0), (7, 10, 5)),
        ((0, 8, 0), (3, 10, 5)),
    ]:
        region = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        files.write(start, data[region])
    theirs[...] = data
    assert files_under(tmp_path / "ours.zarr") == files_under(tmp_path / "theirs.zarr")
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours.zarr"))[...], data)


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("codec", [("zstd", 3), ("gzip", 1), ("none", None)])
def test_read_gives_zarrs_chunks_and_the_fill_value_where_none_is_stored(tmp_path, zarr_format, codec):
    array = make(tmp_path / "a.zarr", zarr_format, codec, "float32")
    data = values("float32")
    array[...] = data
    missing = (1, 2, 0)
    os.remove(ChunkFiles.of(array).path(missing))
    files = ChunkFiles.of(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    for coords in np.ndindex(*(-(-n // c) for n, c in zip(SHAPE, CHUNKS, strict=True))):
        region = tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, CHUNKS, SHAPE, strict=True)
        )
        chunk = files.read(coords)
        assert chunk.dtype == np.float32
        assert chunk.flags.writeable
        expected = np.zeros_like(data[region]) if coords == missing else data[region]
        np.testing.assert_array_equal(chunk, expected)


@pytest.mark.parametrize("codec", [("none", None), ("zstd", 3), ("gzip", 5)])
def test_a_damaged_chunk_file_is_an_error_naming_it(tmp_path, codec):
    array = make(tmp_path / "a.zarr", 3, codec, "float32")
    array[...] = values("float32")
    files = ChunkFiles.of(array)
    with open(files.path((0, 1, 0)), "r+b") as file:
        file.truncate(8)
    with pytest.raises(
        InputFormatError, match=r"a\.zarr/c/0/1/0: chunk \(0, 1, 0\) of this array is damaged"
    ):
        files.read((0, 1, 0))
    with pytest.raises(InputFormatError, match=r"c/0/1/0: chunk"):
        open_input(tmp_path / "a.zarr").array.compute()


@pytest.mark.parametrize(
    ("zarr_format", "codec"), [(3, ("zstd", 3)), (3, ("gzip", 5)), (3, ("none", None)), (2, ("blosc", None))]
)
@pytest.mark.parametrize("size", [100, 300])  # fewer and more bytes than the 240 of a (3, 4, 5) f4 chunk
def test_a_chunk_that_decodes_to_the_wrong_size_is_refused_as_zarr_refuses_it(
    tmp_path, zarr_format, codec, size
):
    # On main a zstd chunk that decoded short filled the rest with uninitialised memory (#15, defect 1).
    array = make(tmp_path / "a.zarr", zarr_format, codec, "float32")
    array[...] = values("float32")
    files = ChunkFiles.of(array)
    payload = np.arange(size, dtype=np.uint8).tobytes()
    path = files.path((1, 1, 0))
    with open(path, "wb") as file:
        file.write(payload if files.codec is None else files.codec.encode(payload))
    with pytest.raises(ValueError, match="cannot reshape array"):  # zarr itself refuses this chunk too
        zarr.open_array(str(tmp_path / "a.zarr"), mode="r")[3:6, 4:8, :]
    with pytest.raises(
        InputFormatError,
        match=rf"a\.zarr/(c/)?1[/.]1[/.]0: chunk \(1, 1, 0\) of this array is damaged \(it holds {size} "
        r"bytes, not 240 bytes \(a \(3, 4, 5\) float32 chunk\)\)",
    ):
        files.read((1, 1, 0))


def test_arrays_only_zarr_can_handle_get_none(tmp_path):
    def v3(name, **options):
        return zarr.create_array(str(tmp_path / name), shape=SHAPE, chunks=CHUNKS, dtype="f4", **options)

    assert ChunkFiles.of(v3("plain.zarr")) is not None
    assert ChunkFiles.of(v3("blosc.zarr", compressors=zarr.codecs.BloscCodec())) is None
    assert (
        ChunkFiles.of(v3("two.zarr", compressors=[zarr.codecs.ZstdCodec(), zarr.codecs.GzipCodec()])) is None
    )
    assert ChunkFiles.of(v3("crc.zarr", compressors=zarr.codecs.Crc32cCodec())) is None
    assert ChunkFiles.of(v3("sharded.zarr", shards=(6, 8, 5))) is None
    assert ChunkFiles.of(v3("big.zarr", serializer=zarr.codecs.BytesCodec(endian="big"))) is None
    assert ChunkFiles.of(v3("transposed.zarr", filters=[zarr.codecs.TransposeCodec(order=(2, 1, 0))])) is None
    assert (
        ChunkFiles.of(zarr.create_array(zarr.storage.MemoryStore(), shape=SHAPE, chunks=CHUNKS, dtype="f4"))
        is None
    )
    filtered = zarr.create_array(
        str(tmp_path / "filtered.zarr"),
        shape=SHAPE,
        chunks=CHUNKS,
        dtype="f4",
        zarr_format=2,
        filters=[__import__("numcodecs").Delta(dtype="f4")],
    )
    assert ChunkFiles.of(filtered) is None
    big_v2 = zarr.create_array(
        str(tmp_path / "big2.zarr"), shape=SHAPE, chunks=CHUNKS, dtype=">f4", zarr_format=2
    )
    assert ChunkFiles.of(big_v2) is None
    fortran = zarr.create_array(
        str(tmp_path / "f.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="f4", zarr_format=2, order="F"
    )
    assert ChunkFiles.of(fortran) is None


def test_a_group_member_is_found_below_the_group(tmp_path):
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w", zarr_format=2)
    array = _zarr.create_array(
        group, "0", shape=SHAPE, dtype=np.dtype("f4"), chunks=CHUNKS, codec=("zstd", 3), zarr_format=2
    )
    files = ChunkFiles.of(array)
    data = values("float32")
    files.write((0, 0, 0), data)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "g.zarr" / "0"))[...], data)


def test_chunk_files_survive_pickling_for_distributed_workers(tmp_path):
    # Each chunk task carries them: the output's provenance attributes stay behind.
    array = make(
        tmp_path / "a.zarr", 3, ("zstd", 3), "float32", attributes={"convflow": {"config": "x" * 50_000}}
    )
    pickled = pickle.dumps(ChunkFiles.of(array))
    assert len(pickled) < 2_000
    files = pickle.loads(pickled)
    data = values("float32")
    files.write((0, 0, 0), data)
    np.testing.assert_array_equal(array[...], data)


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    array = make(tmp_path / "a.zarr", 3, ("zstd", 3), "float32")
    files = ChunkFiles.of(array)

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        files.write((0, 0, 0), values("float32")[:3, :4])
    assert files_under(tmp_path / "a.zarr") == {}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_read_array_is_one_task_per_chunk_file_and_equals_zarr(tmp_path, zarr_format):
    array = make(tmp_path / "a.zarr", zarr_format, ("zstd", 3), "int16")
    data = values("int16")
    array[...] = data
    lazy = read_array(array, CHUNKS)
    assert lazy.name.startswith("chunk-files-")
    assert len(dict(lazy.__dask_graph__())) == lazy.npartitions == 3 * 3
    assert lazy.chunks == ((3, 3, 1), (4, 4, 2), (5,))
    np.testing.assert_array_equal(lazy.compute(scheduler="threads"), data)
    again = read_array(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"), CHUNKS)
    assert again.name == lazy.name  # named after place and layout, as da.from_zarr is
    other = make(tmp_path / "b.zarr", zarr_format, ("zstd", 3), "int16")
    assert read_array(other, CHUNKS).name != lazy.name


def test_read_array_in_other_chunks_reads_through_zarr(tmp_path):
    array = make(tmp_path / "a.zarr", 3, ("zstd", 3), "float32")
    data = values("float32")
    array[...] = data
    lazy = read_array(array, (2, 10, 5))
    assert lazy.name.startswith("from-zarr")
    np.testing.assert_array_equal(lazy.compute(), data)


def test_open_input_reads_chunk_files(tmp_path):
    array = make(tmp_path / "a.zarr", 3, ("gzip", 1), "float64")
    data = values("float64")
    array[...] = data
    image = open_input(tmp_path / "a.zarr")
    assert image.array.name.startswith("chunk-files-")
    np.testing.assert_array_equal(image.array.compute(), data)
    assert open_input(tmp_path / "a.zarr", chunks=(7, 5, 5)).array.name.startswith("from-zarr")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_chunk_deleted_after_opening_is_an_error_naming_it_not_the_fill_value(tmp_path, zarr_format):
    # zarr reads a missing chunk as the fill value; one deleted while a run reads the array must not
    # be (#15 item 5). Its folder changed after the array was opened: that tells the two apart.
    array = make(tmp_path / "a.zarr", zarr_format, ("zstd", 3), "float32")
    array[...] = values("float32")
    files = ChunkFiles.of(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    time.sleep(0.05)  # a run's reads come later than this; file times lag the clock by up to a tick
    os.remove(files.path((1, 2, 0)))
    with pytest.raises(
        InputFormatError, match=r"a\.zarr.*: chunk \(1, 2, 0\) of this array is missing.*--resume"
    ):
        files.read((1, 2, 0))
    np.testing.assert_array_equal(files.read((0, 0, 0)), values("float32")[:3, :4, :5])
    # Opened again after the deletion, the chunk was never there for this reader: the fill value.
    again = ChunkFiles.of(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    np.testing.assert_array_equal(again.read((1, 2, 0)), np.zeros((3, 2, 5), np.float32))


def test_a_chunk_folder_removed_whole_after_opening_is_an_error(tmp_path):
    array = make(tmp_path / "a.zarr", 3, ("zstd", 3), "float32")
    array[...] = values("float32")
    files = ChunkFiles.of(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    time.sleep(0.05)
    shutil.rmtree(os.path.dirname(os.path.dirname(files.path((2, 0, 0)))))  # c/2: every chunk below
    with pytest.raises(
        InputFormatError, match=r"chunk \(2, 1, 0\) of this array is missing, and .*c changed"
    ):
        files.read((2, 1, 0))
    shutil.rmtree(tmp_path / "a.zarr")
    with pytest.raises(InputFormatError, match=r"chunk \(0, 0, 0\) of this array is missing"):
        files.read((0, 0, 0))
