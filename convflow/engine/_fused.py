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
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from convflow.engine import _dtypes, _halo, _methods, _modes, _terms
from convflow.engine._filter import Filter


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


@dataclass(frozen=True)
class Pass:
    """One overlap pass of a stack, as the engine runs it.

    Attributes
    ----------
    filters : tuple of Filter
        The steps the pass fuses, in order.
    halos : tuple of Halo
        Each step's (before, after) halo on every image axis.
    halo : Halo
        Their sum: what every block of the pass borrows, once.
    chunks : tuple of tuple of int
        The working chunks the halo is exchanged over (the image's, merged
        where a chunk is smaller than the halo).
    methods, reasons : tuple of str
        Each step's method for the block it sees inside the pass, and why.
    """

    filters: tuple[Filter, ...]
    halos: tuple[_halo.Halo, ...]
    halo: _halo.Halo
    chunks: tuple[tuple[int, ...], ...]
    methods: tuple[str, ...]
    reasons: tuple[str, ...]

    @property
    def blocks_held(self) -> int:
        """The most padded blocks a sum of separable terms in the pass holds at once (its block included).

        0 when no step runs such a sum; a single separable term holds 3 (the
        block, a pass's input and its output), a 3-D LoG more.
        """
        sums = [
            _terms.plan_sum(f.terms).most_partials
            for f, method in zip(self.filters, self.methods, strict=True)
            if method == "separable" and f.terms is not None
        ]
        return 1 + max(sums) if sums else 0

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """The largest padded block a task of the pass reads: its largest chunk plus the halo."""
        return tuple(max(c) + b + a for c, (b, a) in zip(self.chunks, self.halo, strict=True))


def describe_stack(filters: Sequence[Filter], chunks: tuple[tuple[int, ...], ...]) -> tuple[Pass, ...]:
    """Return the passes that run `filters` over an image of `chunks`, each step's method chosen.

    This is the one place where a stack's passes, halos, working chunks and
    methods are decided: `run` follows it, and ``convflow plan`` reports it.

    Examples
    --------
    >>> from convflow.engine._filter import make_filter
    >>> f = make_filter(np.float32, 1, [1.0, 2.0, 1.0], flip=False, mode="reflect", cval=0.0,
    ...                 origin=0, axes=None, method="direct", dtype=None)
    >>> (only,) = describe_stack([f, f], ((4, 4),))
    >>> only.halo, only.chunks, only.methods
    (((2, 2),), ((4, 4),), ('direct', 'direct'))
    """
    passes = []
    for group in fusable_groups(filters):
        halos = tuple(_halo.full_halo(len(chunks), f.axes, f.halo) for f in group)
        total = sum_halos(halos)
        work = tuple(
            _halo.working_chunks(c, b, a, edges_read_inside=len(group) > 1)
            for c, (b, a) in zip(chunks, total, strict=True)
        )
        largest = tuple(max(c) for c in work)
        choices = []
        for i, filt in enumerate(group):
            block = tuple(c + b + a for c, (b, a) in zip(largest, sum_halos(halos[i:]), strict=True))
            choices.append(_methods.choose_method(filt.method, filt.weights, filt.terms, block, filt.axes))
        methods, reasons = zip(*choices, strict=True)
        passes.append(Pass(tuple(group), halos, total, work, methods, reasons))
    return tuple(passes)


def sum_halos(halos: Sequence[_halo.Halo]) -> _halo.Halo:
    """Add (before, after) halos axis by axis: what a chain of steps reads past a block.

    Examples
    --------
    >>> sum_halos([((1, 1), (0, 0)), ((2, 1), (1, 1))])
    ((3, 2), (1, 1))
    """
    return tuple(
        (sum(h[axis][0] for h in halos), sum(h[axis][1] for h in halos)) for axis in range(len(halos[0]))
    )


def run_filters(image: Any, filters: Sequence[Filter], passes: Sequence[Pass] | None = None) -> Any:
    """Apply checked `filters` in order to a numpy or dask array, in as few passes as exactness allows.

    Intermediates stay in the first filter's compute dtype; the result has
    the last filter's result dtype.  `passes` are `describe_stack`'s for
    this image, when the caller has them already.
    """
    result_dtype = filters[-1].result_dtype
    if image.size == 0:
        return image.astype(result_dtype)
    is_dask = isinstance(image, da.Array)
    if passes is None:
        passes = describe_stack(filters, image.chunks if is_dask else tuple((n,) for n in image.shape))
    compute_dtype = filters[0].compute_dtype
    for index, step in enumerate(passes):
        out_dtype = result_dtype if index == len(passes) - 1 else compute_dtype
        run_pass = _run_pass if is_dask else _run_numpy
        image = run_pass(image, step, compute_dtype, out_dtype)
    return image


def _block_function(image: Any, step: Pass, compute_dtype: np.dtype, out_dtype: np.dtype) -> Any:
    """`_fused_block` bound to one pass over `image`."""
    return functools.partial(
        _fused_block,
        group=step.filters,
        halos=step.halos,
        total=step.halo,
        shape=image.shape,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        methods=step.methods,
    )


def _run_numpy(image: np.ndarray, step: Pass, compute_dtype: np.dtype, out_dtype: np.dtype) -> np.ndarray:
    """One pass over a whole numpy array: pad it once, filter it as one block."""
    first = step.filters[0]
    padded = _halo.pad(np.asarray(image), step.halo, first.mode, first.cval, compute_dtype)
    block = _block_function(image, step, compute_dtype, out_dtype)
    return block(padded, starts=tuple((0,) for _ in image.shape), block_id=(0,) * image.ndim)


def _run_pass(image: da.Array, step: Pass, compute_dtype: np.dtype, out_dtype: np.dtype) -> da.Array:
    """One overlap pass: every block borrows the pass's summed halo once."""
    first = step.filters[0]
    source = image if step.chunks == image.chunks else image.rechunk(step.chunks)
    blocks = _halo.padded_blocks(source, step.halo, first.mode, first.cval, compute_dtype)
    starts = tuple(tuple(itertools.accumulate(chunks[:-1], initial=0)) for chunks in step.chunks)
    result = blocks.map_blocks(
        functools.partial(_block_function(image, step, compute_dtype, out_dtype), starts=starts),
        chunks=step.chunks,
        dtype=out_dtype,
        meta=np.empty((0,) * image.ndim, dtype=out_dtype),
    )
    return result if step.chunks == image.chunks else result.rechunk(image.chunks)


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
