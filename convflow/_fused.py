"""Run a chain of checked filters over an array, as few halo passes as exactness allows.

A chain of correlations is fused into one overlap pass: each block borrows
the summed halo once, and the intermediates never leave the task.  Plain
fusion is wrong near the volume's edge, because step ``i + 1`` must read
step ``i``'s result extended by step ``i + 1``'s own mode, not whatever the
first step's extension produced there.  So after each step the part of the
block that lies outside the volume is rewritten from the part inside, by the
next step's mode.  That is local for every mode but wrap, whose values come
from the far side of the volume: a wrap step after a non-wrap step starts a
new pass (a chain of wrap steps fuses exactly, since periodic extension
commutes with correlation).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np

from convflow import _dtypes, _halo, _methods, _modes

if TYPE_CHECKING:
    from convflow._convolve import Filter


def _is_wrap(mode: str) -> bool:
    return mode in ("wrap", "grid-wrap")


def fusable_groups(filters: Sequence[Filter]) -> list[list[Filter]]:
    """Split a chain of filters into runs that one overlap pass computes exactly.

    Examples
    --------
    >>> from types import SimpleNamespace as F
    >>> chain = [F(mode="reflect"), F(mode="constant"), F(mode="wrap"), F(mode="wrap")]
    >>> [[f.mode for f in g] for g in fusable_groups(chain)]
    [['reflect', 'constant'], ['wrap', 'wrap']]
    """
    groups: list[list[Filter]] = []
    for filt in filters:
        joins = groups and (not _is_wrap(filt.mode) or all(_is_wrap(f.mode) for f in groups[-1]))
        if joins:
            groups[-1].append(filt)
        else:
            groups.append([filt])
    return groups


def run(image: Any, filters: Sequence[Filter], compute_dtype: np.dtype, result_dtype: np.dtype) -> Any:
    """Apply `filters` in order to a numpy or dask array and cast to `result_dtype`."""
    groups = fusable_groups(filters)
    for index, group in enumerate(groups):
        out_dtype = result_dtype if index == len(groups) - 1 else compute_dtype
        image = _run_group(image, group, compute_dtype, out_dtype)
    return image


def _step_halos(ndim: int, group: Sequence[Filter]) -> list[_halo.Halo]:
    return [_halo.full_halo(ndim, f.axes, f.halo) for f in group]


def _sum_halos(halos: Sequence[_halo.Halo]) -> _halo.Halo:
    return tuple(
        (sum(h[axis][0] for h in halos), sum(h[axis][1] for h in halos)) for axis in range(len(halos[0]))
    )


def _choose_methods(
    group: Sequence[Filter], halos: Sequence[_halo.Halo], chunk_shape: tuple[int, ...]
) -> list[str]:
    """The method of each step, for the block it will see inside the fused task."""
    methods = []
    for i, filt in enumerate(group):
        remaining = _sum_halos(halos[i:])
        block_shape = tuple(c + b + a for c, (b, a) in zip(chunk_shape, remaining, strict=True))
        methods.append(
            _methods.choose_method(filt.method, filt.weights, filt.terms, block_shape, filt.axes)[0]
        )
    return methods


def _run_group(image: Any, group: Sequence[Filter], compute_dtype: np.dtype, out_dtype: np.dtype) -> Any:
    """One overlap pass: every block borrows the group's summed halo once."""
    halos = _step_halos(image.ndim, group)
    total = _sum_halos(halos)
    first = group[0]
    block = functools.partial(
        _fused_block,
        group=tuple(group),
        halos=tuple(halos),
        total=total,
        shape=image.shape,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
    )
    if not isinstance(image, da.Array):
        padded = _halo.pad(np.asarray(image), total, first.mode, first.cval, compute_dtype)
        methods = _choose_methods(group, halos, image.shape)
        return block(
            padded,
            methods=tuple(methods),
            starts=tuple((0,) for _ in image.shape),
            block_id=(0,) * image.ndim,
        )
    fused = len(group) > 1
    work = tuple(
        _halo.working_chunks(chunks, b, a, edges_read_inside=fused)
        for chunks, (b, a) in zip(image.chunks, total, strict=True)
    )
    source = image if work == image.chunks else image.rechunk(work)
    blocks = _halo.padded_blocks(source, total, first.mode, first.cval, compute_dtype)
    methods = _choose_methods(group, halos, tuple(max(c) for c in work))
    starts = tuple(tuple(itertools.accumulate(chunks[:-1], initial=0)) for chunks in work)
    result = blocks.map_blocks(
        functools.partial(block, methods=tuple(methods), starts=starts),
        chunks=work,
        dtype=out_dtype,
        meta=np.empty((0,) * image.ndim, dtype=out_dtype),
    )
    return result if work == image.chunks else result.rechunk(image.chunks)


def _fused_block(
    block: np.ndarray,
    *,
    group: tuple[Filter, ...],
    halos: tuple[_halo.Halo, ...],
    total: _halo.Halo,
    shape: tuple[int, ...],
    compute_dtype: np.dtype,
    out_dtype: np.dtype,
    methods: tuple[str, ...],
    starts: tuple[tuple[int, ...], ...],
    block_id: tuple[int, ...],
) -> np.ndarray:
    """Filter one padded block through every step of a group, then cast it."""
    # Volume coordinate of the block's first value, per axis.
    corner = [starts[axis][i] - total[axis][0] for axis, i in enumerate(block_id)]
    values = block
    for i, (filt, method) in enumerate(zip(group, methods, strict=True)):
        values = _methods.correlate_block(values, filt.weights, filt.terms, filt.axes, method, compute_dtype)
        corner = [c + h[0] for c, h in zip(corner, halos[i], strict=True)]
        if i + 1 < len(group):
            following = group[i + 1]
            if not all(_is_wrap(f.mode) for f in group[: i + 2]):
                values = reimpose_boundary(values, corner, shape, following.mode, following.cval)
    return _dtypes.cast_result(values, out_dtype)


def reimpose_boundary(
    values: np.ndarray, corner: Sequence[int], shape: Sequence[int], mode: str, cval: float
) -> np.ndarray:
    """Rewrite the values lying outside the volume as `mode` extends the values inside.

    `values` is a piece of an intermediate result whose first value sits at
    volume coordinate `corner`; the volume has `shape`.

    Examples
    --------
    >>> reimpose_boundary(np.array([9.0, 9.0, 1.0, 2.0, 3.0]), [-2], [3], "reflect", 0.0)
    array([2., 1., 1., 2., 3.])
    """
    for axis, (start, size) in enumerate(zip(corner, shape, strict=True)):
        positions = np.arange(start, start + values.shape[axis])
        outside = np.flatnonzero((positions < 0) | (positions >= size))
        if outside.size == 0:
            continue
        if not values.flags.writeable:
            values = values.copy()
        index = [slice(None)] * values.ndim
        index[axis] = outside
        if _modes.is_constant(mode):
            values[tuple(index)] = cval
            continue
        local = _modes.source_index(positions[outside], size, mode) - start
        if local.min() < 0 or local.max() >= values.shape[axis]:
            raise AssertionError(  # a chunking bug in convflow, never a user error
                f"boundary values for axis {axis} lie outside the block; working chunks too small"
            )
        values[tuple(index)] = np.take(values, local, axis=axis)
    return values
