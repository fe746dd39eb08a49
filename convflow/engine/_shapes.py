"""A Filter's result in scipy.signal's output shapes: full, same and valid.

An engine filter gives one value per input value (``same``); ``full``
gives ``m + n - 1`` along a kernel axis of size ``n``, ``valid``
``m - n + 1``.  Full pads the image by ``n - 1`` on both sides as the mode
extends it (only the outer blocks change), filters, and trims
what reads past the padding; valid filters and trims what reads past the
image.  The trims are the filter's halo, which follows its centre, so full
and valid are the same for any origin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from convflow.engine import _halo
from convflow.engine._blocks import BlockArray, Strided, filter_blocks, from_dask, to_dask
from convflow.engine._filter import Filter
from convflow.engine._fused import Pass, describe_stack, run_filters
from convflow.errors import ArgumentError


def margins(filt: Filter, shape: str, ndim: int) -> tuple[_halo.Halo, _halo.Halo]:
    """The (before, after) padding and trimming per image axis that give `filt` a `shape` result.

    Examples
    --------
    >>> from convflow.engine._filter import make_filter
    >>> f = make_filter(np.float64, 2, np.ones((1, 4)), flip=True, mode="constant", cval=0.0,
    ...                 origin=(0, -1), axes=None, method="auto", dtype=None)
    >>> margins(f, "full", 2), margins(f, "valid", 2)
    ((((0, 0), (3, 3)), ((0, 0), (2, 1))), (((0, 0), (0, 0)), ((0, 0), (2, 1))))
    """
    none = ((0, 0),) * ndim
    if shape == "same":
        return none, none
    # The filter's value at p reads its halo around p: trimming the halo keeps
    # only values that read inside what the filter was given.
    trim = _halo.full_halo(ndim, filt.axes, filt.halo)
    if shape == "valid":
        return none, trim
    grow = _halo.full_halo(ndim, filt.axes, tuple((n - 1, n - 1) for n in filt.weights.shape))
    return grow, trim


def shaped_size(size: tuple[int, ...], filt: Filter, shape: str) -> tuple[int, ...]:
    """The result's shape for an image of `size`.

    Examples
    --------
    >>> from convflow.engine._filter import make_filter
    >>> f = make_filter(np.float64, 1, [1.0, 2.0, 3.0], flip=True, mode="constant", cval=0.0,
    ...                 origin=0, axes=None, method="auto", dtype=None)
    >>> shaped_size((9,), f, "full"), shaped_size((9,), f, "valid")
    ((11,), (7,))
    """
    grow, trim = margins(filt, shape, len(size))
    return tuple(n + gb + ga - tb - ta for n, (gb, ga), (tb, ta) in zip(size, grow, trim, strict=True))


def shape_groups(shapes: Sequence[str]) -> list[tuple[int, int]]:
    """Split a stack's steps into runs that one `run_shaped` call computes: (start, stop) each.

    Steps of ``same`` results fuse as `run_filters` fuses them; a ``full``
    or ``valid`` step changes the shape, so it runs on its own.

    Examples
    --------
    >>> shape_groups(["same", "same", "full", "same", "valid"])
    [(0, 2), (2, 3), (3, 4), (4, 5)]
    """
    groups: list[tuple[int, int]] = []
    for index, shape in enumerate(shapes):
        if groups and shape == "same" and shapes[index - 1] == "same":
            groups[-1] = (groups[-1][0], index + 1)
        else:
            groups.append((index, index + 1))
    return groups


def describe_shaped(
    filters: Sequence[Filter], shape: str, chunks: tuple[tuple[int, ...], ...]
) -> tuple[Pass, ...]:
    """The passes `run_shaped` runs for `filters` on an image of `chunks`: `describe_stack`'s.

    A ``full`` step's pass runs over the chunks grown at the edges.
    """
    if shape != "same":
        (filt,) = filters
        grow, _ = margins(filt, shape, len(chunks))
        chunks = tuple(_grown(axis, b, a) for axis, (b, a) in zip(chunks, grow, strict=True))
    return describe_stack(filters, chunks)


def run_shaped(
    image: Any, filters: Sequence[Filter], shape: str, passes: Sequence[Pass] | None = None
) -> Any:
    """Apply checked filters to a numpy or dask array and return the `shape` result.

    ``same`` takes any number of filters (`run_filters`); ``full`` and
    ``valid`` take one.  A dask result keeps the image's chunks but at the
    outer edges, which grow (full) or shrink (valid): it is `shaped_blocks`'
    blocks.  `passes` are `describe_shaped`'s, when the caller has them
    already.

    Examples
    --------
    >>> from convflow.engine._filter import make_filter
    >>> from convflow.engine._conventions import signal_origin
    >>> f = make_filter(np.float64, 1, [1.0, 2.0, 3.0, 4.0], flip=True, mode="constant", cval=0.0,
    ...                 origin=signal_origin((4,), "convolve"), axes=None, method="auto", dtype=None)
    >>> run_shaped(np.arange(1.0, 10.0), [f], "full")[:4]
    array([ 1.,  4., 10., 20.])
    """
    if shape == "same":
        return run_filters(image, filters, passes)
    if isinstance(image, da.Array):
        return to_dask(shaped_blocks(from_dask(image), filters, shape, passes))
    (filt,) = filters
    _check_size(image.shape, filt, shape)
    grow, trim = margins(filt, shape, image.ndim)
    if any(b or a for b, a in grow):
        image = _halo.pad(np.asarray(image), grow, filt.mode, filt.cval, filt.compute_dtype)
    result = run_filters(image, [filt], passes)
    if any(b or a for b, a in trim):
        result = result[tuple(slice(b, n - a) for n, (b, a) in zip(result.shape, trim, strict=True))]
    return result


def shaped_blocks(
    image: BlockArray, filters: Sequence[Filter], shape: str, passes: Sequence[Pass] | None = None
) -> BlockArray:
    """`run_shaped` over a `BlockArray`: the image grown at its edges, filtered, trimmed, block by block.

    Only the outer blocks along an axis grow (full) or lose values (valid;
    a block left with none is dropped), so the result's chunks are the
    image's but at the edges, and each block's task reads the few blocks
    it covers: nothing is made for the whole image.

    Examples
    --------
    >>> from convflow.engine._blocks import to_dask
    >>> from convflow.engine._filter import make_filter
    >>> f = make_filter(np.float64, 1, [1.0, 1.0, 1.0], flip=True, mode="reflect", cval=0.0,
    ...                 origin=0, axes=None, method="direct", dtype=None)
    >>> x = from_dask(da.from_array(np.arange(1.0, 7.0), chunks=2))
    >>> full, valid = shaped_blocks(x, [f], "full"), shaped_blocks(x, [f], "valid")
    >>> full.chunks, valid.chunks, to_dask(valid).compute()
    (((3, 2, 3),), ((1, 2, 1),), array([ 6.,  9., 12., 15.]))
    """
    if shape == "same":
        return filter_blocks(image, passes if passes is not None else describe_stack(filters, image.chunks))
    (filt,) = filters
    _check_size(image.shape, filt, shape)
    grow, trim = margins(filt, shape, image.ndim)
    if any(b or a for b, a in grow):
        image = _Grown(image, grow, filt.mode, filt.cval, filt.compute_dtype)
    if passes is None:
        passes = describe_stack([filt], image.chunks)
    result = filter_blocks(image, passes)
    if any(b or a for b, a in trim):
        chunks = tuple(_trimmed(axis, b, a) for axis, (b, a) in zip(result.chunks, trim, strict=True))
        result = Strided(result, (1,) * result.ndim, chunks, first=tuple(b for b, _ in trim))
    return result


def _check_size(size: tuple[int, ...], filt: Filter, shape: str) -> None:
    """Raise unless a `shape` result of an image of `size` holds values."""
    if min(shaped_size(size, filt, shape), default=1) < 1:
        raise ArgumentError(
            f"a {shape!r} result of an image of shape {size} with a kernel of shape "
            f"{filt.weights.shape} would hold no values: the kernel is larger than the image; "
            "ask for a 'same' or 'full' result, or use a smaller kernel"
        )


class _Grown(BlockArray):
    """`source` extended by `grow` on each axis as `mode` extends it, into `dtype`.

    Only the first and last blocks along an axis grow; every other block is
    one task that copies its chunk into `dtype` (or the chunk itself, when
    `dtype` is the source's), so the chunks are the source's, grown at the
    edges.

    Examples
    --------
    >>> from convflow.engine._blocks import to_dask
    >>> x = from_dask(da.from_array(np.arange(1.0, 7.0), chunks=2))
    >>> grown = _Grown(x, ((2, 1),), "reflect", 0.0, np.dtype(np.float64))
    >>> grown.chunks, to_dask(grown).compute()
    (((4, 2, 3),), array([2., 1., 1., 2., 3., 4., 5., 6., 6.]))
    """

    def __init__(self, source: BlockArray, grow: _halo.Halo, mode: str, cval: float, dtype: Any) -> None:
        chunks = tuple(_grown(axis, b, a) for axis, (b, a) in zip(source.chunks, grow, strict=True))
        name = f"grown-{tokenize(source.name, grow, mode, cval, np.dtype(dtype).str)}"
        super().__init__(name, chunks, dtype)
        self.source, self.cval = source, cval
        self.runs = [_edge_runs(c, b, a, mode) for c, (b, a) in zip(source.chunks, grow, strict=True)]

    def task(self, index: tuple[int, ...]) -> tuple[Any, list[tuple[BlockArray, tuple[int, ...]]]]:
        picked = [axis[i] for axis, i in zip(self.runs, index, strict=True)]
        if self.dtype == self.source.dtype and not any(grows for _, grows in picked):
            return self.source.key(index), [(self.source, index)]  # the chunk itself (an alias)
        assembly = _halo.Assembly.plan(tuple(runs for runs, _ in picked), self.dtype, self.cval)
        reads = list(assembly.chunks)
        return (assembly, [self.source.key(r) for r in reads]), [(self.source, r) for r in reads]


def _trimmed(chunks: tuple[int, ...], before: int, after: int) -> tuple[int, ...]:
    """`chunks` less `before` values at the start and `after` at the end, empty chunks dropped (as dask).

    Examples
    --------
    >>> _trimmed((3, 3, 3), 4, 1)
    (2, 2)
    """
    stop, kept, start = sum(chunks) - after, [], 0
    for size in chunks:
        inside = min(start + size, stop) - max(start, before)
        if inside > 0:
            kept.append(inside)
        start += size
    return tuple(kept)


def _grown(chunks: tuple[int, ...], before: int, after: int) -> tuple[int, ...]:
    """`chunks` with `before` added to the first and `after` to the last."""
    grown = list(chunks)
    grown[0] += before
    grown[-1] += after
    return tuple(grown)


def _edge_runs(chunks: tuple[int, ...], before: int, after: int, mode: str) -> list[tuple[tuple, bool]]:
    """Per chunk along one axis: the runs of its grown block, and whether it grows."""
    runs = [(axis, False) for axis in _halo.axis_runs(chunks, 0, 0, mode)]
    if len(chunks) == 1:
        return [(_halo.axis_runs(chunks, before, after, mode)[0], bool(before or after))]
    if before:
        runs[0] = (_halo.axis_runs(chunks, before, 0, mode)[0], True)
    if after:
        runs[-1] = (_halo.axis_runs(chunks, 0, after, mode)[-1], True)
    return runs
