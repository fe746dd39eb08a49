"""Whole chunks of local zarr arrays, read and written as files, without zarr's event loop.

zarr-python runs every read and write through one asyncio event loop, in one
thread.  Called from dask's worker threads, that loop is a queue: on the
2-core development machine two threads wrote 128^3 float32 zstd chunks at
12-14 ms a chunk through zarr and at 6 ms as files, and read them at 16-19
against 5-7 ms (benchmarks/bench_chunks.py; RESULTS.md, "Chunk I/O alone").

For the arrays convflow writes, and most it reads, a chunk is one file: its
values in C order, little-endian, through at most one compressor.  `ChunkFiles`
reads and writes those files directly, with the numcodecs codec zarr itself
would call, and writes the way zarr's LocalStore does (a ``*.partial`` file,
then a rename), so every file is byte for byte the one zarr would write.  An
array outside that (another store, sharding, filters, big-endian, other
codecs) gets no `ChunkFiles`, and zarr does the work.

An output's chunk files are written through a scratch folder beside it
(`scratch_path`): a writer killed mid-chunk leaves its ``*.partial`` file
there, never among the chunks, so finishing a run removes one folder of
leftovers instead of listing every chunk file in search of them.

zarr reads a chunk that has no file as the fill value: an array may be
sparse.  A chunk file deleted while a run reads the array looks the same,
and would be read as a block of fill values without a word.  So when a chunk
file is missing, `ChunkFiles.read` asks when the folder that should hold it
last changed (one ``stat``, never a listing): a folder changed after the
array was opened (`ChunkFiles.opened`) lost the file, or is being written,
during the run, and the read is an error naming the chunk; a folder older
than that never held it, and the fill value is zarr's meaning.  This needs
the file system's clock to agree with this machine's (as on a local disk; on
NFS, a server clock ahead of the client's can make an untouched sparse
array's folder look newer, and the run then stops rather than guess).
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numcodecs
import numcodecs.compat
import numpy as np
import zarr
import zarr.codecs
from dask.base import tokenize
from zarr.core.chunk_key_encodings import ChunkKeyEncoding, V2ChunkKeyEncoding
from zarr.storage import LocalStore

from convflow.engine import sliced
from convflow.errors import InputFormatError
from convflow.io._image import check_blocks


@dataclass(frozen=True)
class ChunkFiles:
    """The chunk files of one zarr array on a local disk.

    Attributes
    ----------
    folder : str
        The array's directory.
    shape, chunks : tuple of int
        The array's shape and (regular) chunk shape.
    dtype : numpy.dtype
        The values' dtype (native, little-endian).
    fill_value : scalar
        What a missing chunk holds, and what pads an edge chunk.
    codec : numcodecs codec or None
        The compressor of every chunk file.
    key : callable
        Chunk coordinates to the file's key below `folder` (zarr's own encoder).
    opened : int
        When the array was opened, in ns since the epoch: a chunk file
        missing from a folder changed since then vanished during the run.
    scratch : str or None
        The folder of the temporary files that become chunk files; None:
        beside each chunk, as zarr's own.
    """

    folder: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any
    codec: Any
    key: Callable[[tuple[int, ...]], str]
    opened: int
    scratch: str | None = None

    @classmethod
    def of(cls, array: zarr.Array, scratch: str | None = None) -> ChunkFiles | None:
        """The chunk files of `array` (written through `scratch`), or None when only zarr can do both.

        Examples
        --------
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/a.zarr"
        >>> files = ChunkFiles.of(zarr.create_array(path, shape=(5,), chunks=(2,), dtype="f4"))
        >>> files.chunks, files.codec, files.key((2,))
        ((2,), Zstd(level=0), 'c/2')
        """
        store = array.store
        dtype = array.dtype
        if (
            not isinstance(store, LocalStore)
            or not isinstance(dtype, np.dtype)
            or dtype.kind not in "biuf"
            or dtype.byteorder == ">"
            or array.shards is not None
            or array.ndim == 0
        ):
            return None
        codec = _codec(array.metadata)
        if codec is False:
            return None
        fill = array.fill_value
        return cls(
            folder=os.path.join(str(store.root), array.path),
            shape=tuple(array.shape),
            chunks=tuple(array.chunks),
            dtype=dtype,
            fill_value=0 if fill is None else fill,
            codec=codec,
            key=_key_encoding(array.metadata).encode_chunk_key,
            opened=time.time_ns(),
            scratch=scratch,
        )

    def path(self, coords: tuple[int, ...]) -> str:
        """The file of the chunk at `coords`."""
        return os.path.join(self.folder, *self.key(coords).split("/"))

    def write(self, start: tuple[int, ...], values: np.ndarray) -> None:
        """Store `values` (of `dtype`), which begin at `start` and cover whole chunks, or end at the edge."""
        for coords in itertools.product(
            *(
                range(s // c, -(-(s + n) // c))
                for s, n, c in zip(start, values.shape, self.chunks, strict=True)
            )
        ):
            local = tuple(
                slice(i * c - s, min((i + 1) * c, s + n) - s)
                for i, s, n, c in zip(coords, start, values.shape, self.chunks, strict=True)
            )
            chunk = values[local]
            if chunk.shape != self.chunks:  # the array's edge: zarr pads with the fill value
                padded = np.full(self.chunks, self.fill_value, dtype=self.dtype)
                padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
                chunk = padded
            self._put(self.path(coords), np.ascontiguousarray(chunk, dtype=self.dtype))

    def read(self, coords: tuple[int, ...]) -> np.ndarray:
        """The chunk at `coords`, cut to the array's edge; the fill value where no file was ever stored.

        Raises
        ------
        InputFormatError
            The chunk's file is damaged: it does not decode, or it holds (or
            decodes to) more or fewer bytes than a chunk; or it is missing
            from a folder that changed since the array was opened (deleted,
            or being written, while the run reads the array).
        """
        inside = tuple(min(c, n - i * c) for i, c, n in zip(coords, self.chunks, self.shape, strict=True))
        chunk = np.empty(self.chunks, dtype=self.dtype)
        path = self.path(coords)
        try:
            with open(path, "rb") as file:
                data = file.read() if self.codec is None else self.codec.decode(file.read())
            # Every codec, as zarr-python checks it: a chunk that decodes to other than its size
            # would leave part of `chunk` as whatever memory held before.
            decoded = memoryview(numcodecs.compat.ensure_contiguous_ndarray(data)).cast("B")
            if decoded.nbytes != chunk.nbytes:
                size = f"{chunk.nbytes} bytes (a {self.chunks} {self.dtype} chunk)"
                raise ValueError(f"it holds {decoded.nbytes} bytes, not {size}")
            chunk.data.cast("B")[:] = decoded
        except FileNotFoundError:
            self._check_never_stored(path, coords)
            return np.full(inside, self.fill_value, dtype=self.dtype)
        except (ValueError, RuntimeError, OSError, EOFError, zlib.error) as err:  # numcodecs' decode errors
            raise InputFormatError(
                f"{path}: chunk {coords} of this array is damaged ({err}); restore the file or rewrite "
                "the array, then rerun with --resume (resume=True) to finish what a run left incomplete"
            ) from err
        return chunk if inside == self.chunks else chunk[tuple(slice(0, n) for n in inside)]

    def _check_never_stored(self, path: str, coords: tuple[int, ...]) -> None:
        """Raise unless the folder of the missing chunk file `path` is older than the array's opening.

        The nearest folder that exists is asked, up to the array's own: a
        chunk folder removed whole changes the folder above it.
        """
        folder, top = os.path.dirname(path), os.path.normpath(self.folder)
        changed: int | None = None
        while changed is None:
            try:
                changed = os.stat(folder).st_mtime_ns
            except FileNotFoundError:
                if os.path.normpath(folder) == top or len(folder) <= len(top):
                    break
                folder = os.path.dirname(folder)
        # A file's times come from the kernel's coarse clock, a tick behind `opened`'s: a folder
        # changed before the opening never looks newer (a deletion within that tick looks older).
        if changed is not None and changed <= self.opened:
            return
        raise InputFormatError(
            f"{path}: chunk {coords} of this array is missing, and {folder} changed after the run opened "
            "the array: the chunk was deleted, or the array is being written, while the run read it; "
            "restore the chunk (or let its writer finish), then rerun with --resume (resume=True) to finish "
            "what this run left incomplete"
        )

    def _put(self, path: str, chunk: np.ndarray) -> None:
        data = self.codec.encode(chunk) if self.codec is not None else chunk.data
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.scratch is None:
            partial = f"{path}.{uuid.uuid4().hex}.partial"
        else:
            os.makedirs(self.scratch, exist_ok=True)
            partial = os.path.join(self.scratch, f"{uuid.uuid4().hex}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(data)
            os.replace(partial, path)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise


# Beside an output `path`: `path` + this suffix, the folder of its chunk files' temporaries.
SCRATCH_SUFFIX = ".convflow-scratch"


def scratch_path(path: str) -> str:
    """The scratch folder of output `path`.

    Examples
    --------
    >>> scratch_path("out/edges.zarr/")
    'out/edges.zarr.convflow-scratch'
    """
    return f"{path.rstrip('/')}{SCRATCH_SUFFIX}"


def remove_scratch(path: str) -> None:
    """Remove the scratch folder of output `path`: only what killed writers left is in it."""
    shutil.rmtree(scratch_path(path), ignore_errors=True)


def _key_encoding(metadata: Any) -> ChunkKeyEncoding:
    """zarr's chunk key encoding of an array, apart from the rest of its metadata.

    The metadata also holds the array's attributes, which every task reading
    or writing a chunk would otherwise carry to distributed workers.
    """
    if metadata.zarr_format == 2:
        return V2ChunkKeyEncoding(separator=metadata.dimension_separator)
    return metadata.chunk_key_encoding


def _codec(metadata: Any) -> Any:
    """The numcodecs compressor zarr applies to each chunk (None for none), or False if not just one."""
    if metadata.zarr_format == 2:
        if metadata.filters or metadata.order != "C":
            return False
        return metadata.compressor
    first, *rest = metadata.codecs
    if not isinstance(first, zarr.codecs.BytesCodec) or first.endian not in (None, zarr.codecs.Endian.little):
        return False
    if not rest:
        return None
    if len(rest) > 1:
        return False
    (codec,) = rest
    if isinstance(codec, zarr.codecs.ZstdCodec):
        return numcodecs.Zstd(level=codec.level, checksum=codec.checksum)
    if isinstance(codec, zarr.codecs.GzipCodec):
        return numcodecs.GZip(level=codec.level)
    return False


def read_array(array: zarr.Array, chunks: tuple[int, ...]) -> da.Array:
    """`array` as a dask array of `chunks`: a task per chunk file where those are its chunks, else from zarr.

    Like ``da.from_zarr``, the graph is named after the array's place and
    layout, never its data.  It is ``da.from_array`` over `ChunkReader`: no
    task is made per chunk until a block is asked for, so opening an array of
    any number of chunks costs the same.
    """
    store = array.store
    local = isinstance(store, LocalStore)
    where = (
        os.path.join(str(store.root), *[array.path][: bool(array.path)]) if local else str(array.store_path)
    )
    check_blocks(where, array.shape, chunks)
    files = ChunkFiles.of(array)
    if files is None or tuple(chunks) != files.chunks:
        return da.from_zarr(array, chunks=chunks)
    token = tokenize(files.folder, files.shape, files.chunks, files.dtype.str, repr(files.codec))
    meta = np.empty((0,) * len(files.shape), dtype=files.dtype)
    reader = ChunkReader(files)
    name = f"chunk-files-{token}"
    lazy = da.from_array(
        reader, files.chunks, name=name, meta=meta, asarray=False, fancy=False, inline_array=True
    )
    return sliced(lazy, reader)


class ChunkReader:
    """An array-like over `ChunkFiles` whose every slice is one whole chunk (as `read_array` asks)."""

    def __init__(self, files: ChunkFiles) -> None:
        self.files, self.shape, self.dtype, self.ndim = files, files.shape, files.dtype, len(files.shape)

    def __getitem__(self, region: tuple[slice, ...]) -> np.ndarray:
        coords = tuple((r.start or 0) // c for r, c in zip(region, self.files.chunks, strict=True))
        return self.files.read(coords)
