"""InputImage, the axes letters of an image, and lazy reading of file-backed arrays."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from convflow.engine import SPATIAL
from convflow.errors import ArgumentError, InputFormatError

# Working chunk size for files that have no chunking of their own (npy) or a tiny one (TIFF strips).
_TARGET_CHUNK_BYTES = 32 * 2**20
# The most blocks along one axis an array may be read or written in.  Waves make tasks for their own
# blocks only (#12), so the total is unbounded, but a block grid keeps every axis's block sizes (dask's
# chunks): a shape of 10**12 along one axis in small chunks must be refused, not tried.
MAX_BLOCKS_PER_AXIS = 2**20
# Letters for leading batch axes when none are given, in OME-NGFF's order (time, channel).
_BATCH_LETTERS = "tcbnmqrsuvw"


@dataclass(frozen=True, eq=False)
class InputImage:
    """An opened input: a lazy dask array and what its file says about it.

    Attributes
    ----------
    array : dask.array.Array
        The image, read chunk by chunk only when computed.
    axes : str
        One lower-case letter per axis; ``x``, ``y`` and ``z`` are spatial, any
        other letter is a batch axis.
    path : str
        The path (or glob pattern) as given.
    format : str
        ``zarr``, ``zarr-v2``, ``ome-zarr``, ``tiff``, ``ome-tiff``, ``npy``, or
        ``glob`` for a stack of files.
    dataset : str or None
        The array inside a zarr group, or the OME-Zarr resolution level.
    scale, translation : tuple of float or None
        Physical pixel size and offset per axis, when the file records them.
    units : tuple of (str or None) or None
        Unit of each axis (e.g. ``micrometer``), when the file records them.
    files : tuple of str
        For a glob: the matched files, in stacking order.
    storage_chunks : tuple of int or None
        The chunk (or tile, or page) shape on disk.
    codec : str
        The compression on disk, e.g. ``zstd(level=3)``, or ``none``.
    provenance : dict or None
        The ``convflow`` record when the input was written by convflow.
    axes_guessed : bool
        True when the file names no axes and `axes` is the default guess
        (`default_axes`), not what the file or the caller said.
    storage_options : dict or None
        For a URL: the options its store was opened with (never shown: they
        may hold credentials).
    """

    array: da.Array
    axes: str
    path: str
    format: str
    dataset: str | None = None
    scale: tuple[float, ...] | None = None
    translation: tuple[float, ...] | None = None
    units: tuple[str | None, ...] | None = None
    files: tuple[str, ...] = ()
    storage_chunks: tuple[int, ...] | None = None
    codec: str = "none"
    provenance: dict[str, Any] | None = field(default=None, repr=False)
    axes_guessed: bool = False
    storage_options: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array."""
        return tuple(int(n) for n in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the array."""
        return self.array.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return self.array.ndim

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """The working (dask) chunks."""
        return self.array.chunks

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        """Positions of the x, y and z axes, in increasing order."""
        return tuple(i for i, letter in enumerate(self.axes) if letter in SPATIAL)


def default_axes(ndim: int) -> str:
    """Return the spec's default axes: the last 2 (yx) or 3 (zyx) axes spatial.

    Examples
    --------
    >>> default_axes(2), default_axes(3), default_axes(5)
    ('yx', 'zyx', 'tczyx')
    """
    spatial = SPATIAL[-min(ndim, 3) :] if ndim >= 2 else "x"
    batch = ndim - len(spatial)
    if batch > len(_BATCH_LETTERS):
        raise ArgumentError(f"an image with {ndim} axes has too many batch axes to name; give axes=")
    return _BATCH_LETTERS[:batch] + spatial


def parse_axis_letters(axes: object, shape: Sequence[int], what: str = "axes") -> str:
    """Return `axes` as lower-case letters, one per axis of `shape`, or raise.

    Examples
    --------
    >>> parse_axis_letters("TZYX", (2, 3, 4, 5))
    'tzyx'
    >>> parse_axis_letters(None, (4, 5))
    'yx'
    """
    ndim = len(shape)
    if axes is None:
        return default_axes(ndim)
    if not isinstance(axes, str):
        raise ArgumentError(f"{what}={axes!r} must be a string of letters, one per axis, e.g. 'zyx'")
    letters = axes.lower()
    if len(letters) != ndim or not (letters.isascii() and letters.isalpha()):
        raise ArgumentError(
            f"{what}={axes!r} must have one letter per axis: the image has shape {tuple(shape)}, "
            f"so give {ndim} letters, e.g. {what}={default_axes(ndim)!r}"
        )
    repeated = sorted({c for c in letters if letters.count(c) > 1})
    if repeated:
        raise ArgumentError(
            f"{what}={axes!r} repeats {', '.join(map(repr, repeated))}; give every axis its own letter"
        )
    return letters


def parse_chunks(chunks: object, shape: Sequence[int], what: str = "chunks") -> tuple[int, ...] | None:
    """Return one positive chunk length per axis (-1 or None: the whole axis), or raise.

    Examples
    --------
    >>> parse_chunks([2, -1], (10, 7))
    (2, 7)
    >>> parse_chunks(4, (10, 7))
    (4, 4)
    """
    if chunks is None:
        return None
    given = [chunks] * len(shape) if isinstance(chunks, (int, np.integer)) else chunks
    try:
        given = list(given)  # type: ignore[call-overload]
    except TypeError:
        given = None
    if given is None or len(given) != len(shape):
        raise ArgumentError(
            f"{what}={chunks!r} needs one entry per axis of shape {tuple(shape)}, e.g. {what}={list(shape)}"
        )
    result = []
    for size, extent in zip(given, shape, strict=True):
        if size is None or (isinstance(size, (int, np.integer)) and size == -1):
            result.append(max(int(extent), 1))
        elif isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size >= 1:
            result.append(int(size))
        else:
            raise ArgumentError(
                f"{what}={chunks!r}: {size!r} is not a chunk length; use positive integers "
                f"(or -1 for a whole axis), e.g. {what}={list(shape)}"
            )
    return tuple(result)


def too_many_blocks(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, int] | None:
    """Return (axis, blocks) for the first axis cut into more than MAX_BLOCKS_PER_AXIS blocks, else None.

    Examples
    --------
    >>> too_many_blocks((65536, 65536, 65536), (128, 128, 128)) is None
    True
    >>> too_many_blocks((64, 64, 10**12), (16, 16, 16))
    (2, 62500000000)
    """
    for axis, (n, c) in enumerate(zip(shape, chunks, strict=True)):
        count = -(-int(n) // max(int(c), 1))
        if count > MAX_BLOCKS_PER_AXIS:
            return axis, count
    return None


def check_blocks(
    what: str, shape: Sequence[int], chunks: Sequence[int], key: str = "working chunks (input.chunks)"
) -> None:
    """Raise unless `shape` in blocks of `chunks` makes at most MAX_BLOCKS_PER_AXIS blocks along each axis.

    Examples
    --------
    >>> check_blocks("a.zarr", (64, 64, 10**12), (16, 16, 16))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.InputFormatError: a.zarr: shape (64, 64, 1000000000000) in blocks of (16, 16, 16) ...
    """
    found = too_many_blocks(shape, chunks)
    if found is not None:
        axis, count = found
        raise InputFormatError(
            f"{what}: shape {tuple(shape)} in blocks of {tuple(chunks)} makes {count:,} blocks along axis "
            f"{axis}, more than the {MAX_BLOCKS_PER_AXIS:,} convflow can plan along one axis; give larger "
            f"{key}, or check the shape the file records"
        )


def auto_chunks(shape: Sequence[int], itemsize: int, storage: Sequence[int] | None = None) -> tuple[int, ...]:
    """Return working chunks of whole rows, about 32 MiB, made of whole `storage` chunks.

    Examples
    --------
    >>> auto_chunks((100, 512, 512), 2)
    (64, 512, 512)
    >>> auto_chunks((4096, 3000), 4, storage=(256, 256))
    (2560, 3000)
    """
    budget = max(_TARGET_CHUNK_BYTES // itemsize, 1)
    chunks = list(shape)
    # Whole rows keep the reads of a C-order file or a page of a TIFF contiguous.
    for axis in range(len(shape)):
        inner = math.prod(shape[axis + 1 :])
        if inner <= budget:
            chunks[axis] = max(1, min(shape[axis], budget // inner))
            break
        chunks[axis] = 1
    if storage is not None:
        # Round down to whole storage chunks, so that no block decodes a tile another block decodes.
        chunks = [max(s, c // s * s) if c < n else n for c, s, n in zip(chunks, storage, shape, strict=True)]
    return tuple(chunks)


class LazyFile:
    """An array-like over one file that opens it on first access, in each process.

    Dask slices it block by block; pickling sends only the recipe (`opener` and its
    arguments), never an open file handle or the data.
    """

    def __init__(self, opener: Callable[..., Any], args: tuple[Any, ...], shape: tuple[int, ...], dtype: Any):
        self.opener, self.args = opener, args
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self._opened: Any = None
        self._lock = threading.Lock()

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._opened is None:
            with self._lock:
                if self._opened is None:
                    self._opened = self.opener(*self.args)
        return np.asarray(self._opened[key])

    def __del__(self) -> None:
        # Close what the opener opened (a TIFF's file handle) before the garbage collector warns.
        close = getattr(self._opened, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):  # at interpreter exit modules may be gone already
                close()

    def __getstate__(self) -> dict[str, Any]:
        return {"opener": self.opener, "args": self.args, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def to_dask(self, path: str, chunks: tuple[int, ...]) -> da.Array:
        """Return a dask array reading `chunks`-sized blocks; its name changes with the file."""
        check_blocks(path, self.shape, chunks)
        stat = os.stat(path)
        name = f"read-{os.path.basename(path)}-{tokenize(path, stat.st_mtime_ns, stat.st_size, self.args)}"
        meta = np.empty((0,) * self.ndim, dtype=self.dtype)
        return da.from_array(self, chunks=chunks, name=name, meta=meta, asarray=False, fancy=False)
