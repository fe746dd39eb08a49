"""Zarr v2 and v3 arrays and groups: lazy reading, creating outputs, and finding written chunks."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator
from typing import Any

import numcodecs
import numpy as np
import zarr
import zarr.codecs
import zarr.errors
import zarr.storage

from convflow.errors import ArgumentError, InputFormatError
from convflow.io import _stores
from convflow.io._chunks import read_array
from convflow.io._image import InputImage, default_axes, parse_chunks

# Working blocks of a remote array group its chunks up to this size: one task's read fetches them all
# concurrently (W1's 128^3 float32 chunks: 4 of them, 32 MiB).  Not larger: a block's padded
# intermediates then exceed glibc's 32 MiB ceiling on its mmap threshold, so every pass's result
# lands on freshly zeroed pages (W1 from S3 in 64 MiB blocks: 4 s of kernel time, 1.6 GB peak RSS;
# in 32 MiB blocks: 2.4 s and 1.1 GB, no slower with 20 ms a request; benchmarks/RESULTS.md).
REMOTE_BLOCK_BYTES = 32 * 2**20
ZARR_METADATA = frozenset({"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"})
# A sharded input is read a shard per block while a shard holds at most this many bytes: each shard
# is then fetched and decoded once, whole.  Larger shards (a 1024^3 uint16 shard is 2 GiB, 4 GiB once
# computed in float32) are read in blocks of whole inner chunks that tile each shard, so a task's
# memory stays that of a chunked input's; zarr then reads each block's inner chunks alone.
SHARD_BLOCK_BYTES = 64 * 2**20
# Output codecs zarr can write in both formats; level None means the codec's default.
ZARR_CODECS = ("zstd", "gzip", "blosc", "none")
# The levels each codec accepts (zstd: numcodecs' and libzstd's range, negative levels are faster).
ZARR_LEVELS = {"zstd": (-131072, 22), "gzip": (0, 9), "blosc": (0, 9)}


def is_zarr_store(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    """Return whether `path` (a directory, or a remote URL) holds zarr v2 or v3 metadata."""
    if _stores.is_remote(path):
        try:
            return _stores.is_zarr_store(path, storage_options)
        except _stores.store_errors() as err:
            raise _stores.store_error(path, err, writing=False) from err
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, m)) for m in ZARR_METADATA)


def open_node(path: str, storage_options: dict[str, Any] | None = None) -> zarr.Array | zarr.Group:
    """Open the zarr array or group at `path` (a local path or a URL) read-only, or raise naming it."""
    store = _stores.zarr_store(path, storage_options, read_only=True)
    try:
        return zarr.open(store=store, mode="r")
    except (zarr.errors.NodeNotFoundError, FileNotFoundError) as err:
        if not _stores.is_remote(path):
            raise InputFormatError(f"{path}: not a readable zarr array or group ({err})") from err
        raise InputFormatError(
            f"{_stores.redact_text(path)}: holds no zarr array or group (no zarr.json, .zarray or .zgroup "
            "there); check the path"
        ) from err
    except PermissionError as err:
        raise _stores.store_error(path, err, writing=False) from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        if _stores.is_remote(path):
            raise _stores.store_error(path, err, writing=False) from err
        raise InputFormatError(f"{path}: not a readable zarr array or group ({err})") from err
    except _stores.store_errors() as err:
        raise _stores.store_error(path, err, writing=False) from err


def open_array_for(path: str, storage_options: dict[str, Any] | None, mode: str = "r") -> zarr.Array:
    """Open the zarr array at `path` (a local path or a URL) with `mode`."""
    store = _stores.zarr_store(path, storage_options, read_only=mode == "r")
    return zarr.open_array(store=store, mode=mode)  # type: ignore[arg-type]


def open_zarr_array(node: zarr.Array, path: str, dataset: str | None, chunks: object) -> InputImage:
    """Wrap a zarr array as an InputImage; nothing is read until compute."""
    if node.dtype.kind not in "biuf" or node.ndim == 0:
        raise InputFormatError(
            f"{path}: holds {node.ndim}-d {node.dtype} data; convflow reads numeric arrays with at "
            "least one axis"
        )
    storage = tuple(node.shards or node.chunks)
    # Named after the array's path and layout, never after its data (as da.from_zarr is).
    array = read_array(node, parse_chunks(chunks, node.shape) or working_chunks(node, storage))
    names = getattr(node.metadata, "dimension_names", None)
    named = _axes_from_names(names)
    return InputImage(
        array=array,
        axes=named or default_axes(node.ndim),
        path=path,
        format="zarr" if node.metadata.zarr_format == 3 else "zarr-v2",
        dataset=dataset,
        storage_chunks=storage,
        codec=describe_codecs(node),
        provenance=node.attrs.get("convflow"),
        axes_guessed=named is None and not isinstance(node.attrs.get("convflow"), dict),
    )


def working_chunks(node: zarr.Array, storage: tuple[int, ...]) -> tuple[int, ...]:
    """The default working chunks of a stored array: its storage units, grouped when it is remote.

    A block of an array at a URL is read in one zarr call that fetches all its
    chunks at once, so grouping about `REMOTE_BLOCK_BYTES` of them keeps many
    requests in flight per task instead of one, and latency stops bounding
    throughput (#14 item 4).  Local arrays keep their storage chunks.  A
    sharded array, local or remote, is read a shard per block, or in whole
    inner chunks of a shard where one is larger than `SHARD_BLOCK_BYTES`
    (`shard_blocks`).
    """
    if node.shards is not None:
        return shard_blocks(node)
    if isinstance(node.store, zarr.storage.LocalStore):
        return storage
    return group_chunks(storage, tuple(node.shape), node.dtype.itemsize)


def group_chunks(storage: tuple[int, ...], shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """`storage` chunks doubled along one axis after another, up to `REMOTE_BLOCK_BYTES` a block.

    Examples
    --------
    >>> group_chunks((128, 128, 128), (512, 512, 512), 4)
    (256, 256, 128)
    >>> group_chunks((64, 64), (100, 64), 1)
    (128, 64)
    """
    block = list(storage)
    grown = True
    while grown:
        grown = False
        for axis in range(len(block)):
            if block[axis] >= shape[axis] or 2 * math.prod(block) * itemsize > REMOTE_BLOCK_BYTES:
                continue
            block[axis] *= 2
            grown = True
    return tuple(block)


def shard_blocks(node: zarr.Array, limit: int = SHARD_BLOCK_BYTES) -> tuple[int, ...]:
    """The default working chunks of a sharded array: its shards while one fits `limit` bytes.

    A larger shard is cut, leading axis first, into blocks of whole inner
    chunks that tile it exactly (a divisor of its chunks per axis), until a
    block fits `limit` or is one inner chunk: no block then reads part of
    another's inner chunk, nor of two shards.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/a.zarr"
    >>> node = zarr.create_array(path, shape=(64, 64), chunks=(4, 8), shards=(24, 64), dtype="u1")
    >>> shard_blocks(node), shard_blocks(node, limit=600), shard_blocks(node, limit=10)
    ((24, 64), (8, 64), (4, 8))
    """
    block, inner = list(node.shards), tuple(node.chunks)
    itemsize = node.dtype.itemsize
    for axis, size in enumerate(inner):
        if math.prod(block) * itemsize <= limit:
            break
        count = block[axis] // size  # inner chunks along this axis: a block holds a divisor of them
        rest = math.prod(block) // block[axis] * itemsize
        fitting = [d for d in range(1, count + 1) if count % d == 0 and rest * d * size <= limit]
        block[axis] = size * max(fitting, default=1)
    return tuple(block)


def _axes_from_names(names: Any) -> str | None:
    """Return zarr v3 dimension names as axes letters when each is one distinct letter."""
    if not names or not all(isinstance(n, str) and len(n) == 1 and n.isalpha() for n in names):
        return None
    letters = "".join(names).lower()
    return letters if len(set(letters)) == len(letters) else None


def pick_dataset(group: zarr.Group, path: str, dataset: str | None) -> zarr.Array | zarr.Group:
    """Return the member `dataset` of a plain group, or raise listing the arrays it holds."""
    arrays = [name for name, member in group.members(max_depth=None) if isinstance(member, zarr.Array)]
    listing = ", ".join(sorted(arrays)) or "none"
    if dataset is None:
        raise InputFormatError(
            f"{path}: is a zarr group; name the array to read with dataset=..., one of: {listing}"
        )
    try:
        return group[dataset.strip("/")]
    except KeyError:
        close = difflib.get_close_matches(dataset, arrays, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputFormatError(
            f"{path}: has no array {dataset!r}.{hint} Arrays in this group: {listing}"
        ) from None


def describe_codecs(node: zarr.Array) -> str:
    """Return the array's compression as text, e.g. ``zstd(level=3)``; ``none`` when uncompressed.

    A sharded array's text ends in its shards and their inner chunks, e.g.
    ``zstd(level=3); shards (64, 64) of chunks (16, 16)``: its storage chunks
    elsewhere are its shards, each one stored object.
    """
    parts = []
    for codec in node.compressors:
        config = codec.get_config() if hasattr(codec, "get_config") else codec.to_dict()
        name = config.pop("id", None) or config.get("name", type(codec).__name__)
        options = config.get("configuration", config)
        args = ", ".join(f"{k}={v}" for k, v in options.items() if k not in ("name", "id"))
        parts.append(f"{name}({args})")
    text = " + ".join(parts) or "none"
    if node.shards is not None:
        text += f"; shards {tuple(node.shards)} of chunks {tuple(node.chunks)}"
    return text


def compressors(codec: str, level: int | None, zarr_format: int) -> Any:
    """Return zarr's `compressors` argument for a codec name and level, or raise."""
    if codec not in ZARR_CODECS:
        raise ArgumentError(
            f"compression codec {codec!r} cannot be written to zarr; use one of {', '.join(ZARR_CODECS)}"
        )
    check_level(codec, level, ZARR_LEVELS.get(codec))
    if codec == "none":
        return None
    if zarr_format == 2:
        made = {
            "zstd": lambda: numcodecs.Zstd(level=3 if level is None else level),
            "gzip": lambda: numcodecs.GZip(level=5 if level is None else level),
            "blosc": lambda: numcodecs.Blosc(cname="zstd", clevel=5 if level is None else level),
        }
    else:
        made = {
            "zstd": lambda: zarr.codecs.ZstdCodec(level=3 if level is None else level),
            "gzip": lambda: zarr.codecs.GzipCodec(level=5 if level is None else level),
            "blosc": lambda: zarr.codecs.BloscCodec(cname="zstd", clevel=5 if level is None else level),
        }
    return made[codec]()


def check_level(codec: str, level: int | None, levels: tuple[int, int] | None) -> None:
    """Raise unless `level` is None or within `levels`, the range codec `codec` accepts (None: no level).

    Examples
    --------
    >>> check_level("gzip", 9, (0, 9))
    >>> check_level("gzip", 10, (0, 9))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.ArgumentError: compression=...: gzip levels run from 0 to 9; e.g. level: 9
    """
    if level is None:
        return
    given = f"compression={{'codec': {codec!r}, 'level': {level!r}}}"
    if levels is None:
        raise ArgumentError(f"{given}: codec {codec!r} takes no level; drop the level")
    low, high = levels
    if isinstance(level, bool) or not low <= level <= high:
        example = min(max(level, low), high) if not isinstance(level, bool) else min(3, high)
        raise ArgumentError(f"{given}: {codec} levels run from {low} to {high}; e.g. level: {example}")


def create_array(
    store: Any,
    name: str | None,
    *,
    shape: tuple[int, ...],
    dtype: np.dtype,
    chunks: tuple[int, ...],
    codec: tuple[str, int | None],
    zarr_format: int,
    axes: str | None = None,
    attributes: dict[str, Any] | None = None,
    shards: tuple[int, ...] | None = None,
) -> zarr.Array:
    """Create an output array whose every chunk is stored, even one equal to the fill value.

    Storing every chunk is what lets a resumed run tell written chunks from missing ones.
    With `shards` (zarr v3 only), `chunks` are the inner chunks and each shard
    is one stored object, holding every one of its chunks.
    """
    options: dict[str, Any] = {
        "shape": shape,
        "dtype": dtype,
        "chunks": chunks,
        "shards": shards,
        "compressors": compressors(*codec, zarr_format),
        "fill_value": 0,
        "attributes": attributes,
        "dimension_names": tuple(axes) if axes and zarr_format == 3 else None,
        "config": {"write_empty_chunks": True},
    }
    if isinstance(store, zarr.Group):
        return store.create_array(name or "", **options)  # type: ignore[arg-type]
    return zarr.create_array(store=store, zarr_format=zarr_format, **options)  # type: ignore[arg-type]


def open_for_writing(path: str, storage_options: dict[str, Any] | None = None) -> zarr.Array:
    """Reopen an existing output array (a local path or a URL) for writing, storing every chunk."""
    # open_array ignores `config`; with_config is what sets it on an existing array.
    return open_array_for(path, storage_options, "r+").with_config({"write_empty_chunks": True})


def remove_partial_files(path: str) -> None:
    """Remove zarr's temporary ``*.partial`` chunk files anywhere under `path`.

    A worker killed while writing a chunk leaves one; the retried task writes
    the chunk itself, so the leftover is only litter in a finished output.
    """
    for relative in _files_under(path):
        if relative.endswith(".partial"):
            os.remove(os.path.join(path, relative))


def _files_under(path: str) -> Iterator[str]:
    """Yield the paths of all files under `path`, relative to it, with '/' separators."""
    for folder, _, files in os.walk(path):
        relative = os.path.relpath(folder, path).replace(os.sep, "/")
        for name in files:
            yield name if relative == "." else f"{relative}/{name}"
