"""Halos: how far a kernel reads past a block, and how blocks get them.

This is the one module that speaks dask's words (`depth`, `boundary`).  A
filtered block is computed as a *valid* correlation of a padded block: the
block's own values, the halo borrowed from its neighbours, and, at the edge
of the volume, values made up by the boundary mode.  Along each axis, every
value of a padded block is a position of the volume (or the constant
`cval`); runs of positions that step through one chunk become one slice, and
one task per block copies those slices into place.  So every mode, origin and
halo size goes one way, with one copy of the data.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from convflow.engine._modes import is_constant, source_index

Halo = tuple[tuple[int, int], ...]


def correlation_halo(kernel_shape: tuple[int, ...], origin: tuple[int, ...]) -> Halo:
    """Return the (before, after) halo each axis needs for correlation.

    scipy centres a kernel of size ``n`` at ``n // 2 + origin``.

    Examples
    --------
    >>> correlation_halo((3, 4), (0, 0))
    ((1, 1), (2, 1))
    >>> correlation_halo((5,), (-2,))
    ((0, 4),)
    """
    return tuple((n // 2 + o, n - 1 - n // 2 - o) for n, o in zip(kernel_shape, origin, strict=True))


def full_halo(ndim: int, axes: tuple[int, ...], halo: Halo) -> Halo:
    """Spread a per-kernel-axis halo over all `ndim` image axes (batch axes get none).

    Examples
    --------
    >>> full_halo(3, (1, 2), ((1, 1), (2, 0)))
    ((0, 0), (1, 1), (2, 0))
    """
    per_axis = dict(zip(axes, halo, strict=True))
    return tuple(per_axis.get(axis, (0, 0)) for axis in range(ndim))


def minimum_chunks(chunks: tuple[int, ...], size: int) -> tuple[int, ...]:
    """Merge chunks along one axis until each is at least `size` (or the axis is one chunk).

    Examples
    --------
    >>> minimum_chunks((4, 4, 4, 1), 3)
    (4, 4, 5)
    >>> minimum_chunks((2, 2, 2), 3)
    (6,)
    >>> minimum_chunks((2, 2), 9)
    (4,)
    """
    if size <= 0 or min(chunks) >= size:
        return chunks
    merged: list[int] = []
    current = 0
    for chunk in chunks:
        current += chunk
        if current >= size:
            merged.append(current)
            current = 0
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return tuple(merged)


def working_chunks(
    chunks: tuple[int, ...], before: int, after: int, *, edges_read_inside: bool
) -> tuple[int, ...]:
    """Chunks along one axis that a halo of (`before`, `after`) can be exchanged over.

    Every chunk must hold at least the halo its neighbours borrow.  With
    `edges_read_inside` (a fused stack re-imposing its boundary rules), the
    first and last chunks must also hold every value a mode reads back from
    inside the volume: ``before + 1`` and ``after + 1`` values.

    Examples
    --------
    >>> working_chunks((4, 4, 4), 2, 2, edges_read_inside=False)
    (4, 4, 4)
    >>> working_chunks((2, 4, 4, 2), 2, 2, edges_read_inside=True)
    (6, 6)
    """
    merged = list(minimum_chunks(chunks, max(before, after)))
    if edges_read_inside:
        while len(merged) > 1 and merged[0] < before + 1:
            merged[:2] = [merged[0] + merged[1]]
        while len(merged) > 1 and merged[-1] < after + 1:
            merged[-2:] = [merged[-2] + merged[-1]]
    return tuple(merged)


@dataclass(frozen=True)
class Run:
    """Consecutive values of a padded block, along one axis, that one slice of one chunk gives.

    `chunk` is the source chunk's index along the axis, or None where the
    values are the constant `cval`.  `source` is a slice of that chunk, with
    step 1, -1 (a reflection), or a single value repeated (``nearest``).
    """

    target: slice
    chunk: int | None
    source: slice


def axis_runs(chunks: tuple[int, ...], before: int, after: int, mode: str) -> list[tuple[Run, ...]]:
    """For each chunk along one axis, the runs its padded block is made of.

    Examples
    --------
    >>> [(r.target, r.chunk, r.source) for r in axis_runs((3, 3), 2, 0, "reflect")[0]]
    [(slice(0, 2, None), 0, slice(1, None, -1)), (slice(2, 5, None), 0, slice(0, 3, 1))]
    """
    edges = np.cumsum((0, *chunks))
    size = int(edges[-1])
    result = []
    for index in range(len(chunks)):
        positions = np.arange(edges[index] - before, edges[index + 1] + after)
        inside = (positions >= 0) & (positions < size)
        if is_constant(mode):
            sources = np.where(inside, positions, -1)
        else:
            sources = source_index(positions, size, mode)
        owners = np.where(sources >= 0, np.searchsorted(edges, sources, side="right") - 1, -1)
        result.append(tuple(_runs(sources.tolist(), owners.tolist(), edges)))
    return result


def _runs(sources: list[int], owners: list[int], edges: np.ndarray) -> list[Run]:
    """Split source positions into runs of one chunk and one step (-1, 0 or 1)."""
    runs = []
    start = 0
    while start < len(sources):
        owner = owners[start]
        stop = start + 1
        step = sources[stop] - sources[start] if stop < len(sources) else 1
        if owner < 0 or abs(step) > 1:
            step = 1
        while (
            stop < len(sources)
            and owners[stop] == owner
            and (owner < 0 or sources[stop] - sources[stop - 1] == step)
        ):
            stop += 1
        if owner < 0:
            runs.append(Run(slice(start, stop), None, slice(0, 0)))
        else:
            first = sources[start] - int(edges[owner])
            if step == 0:
                source = slice(first, first + 1)
            else:
                last = first + (stop - start - 1) * step
                source = slice(first, None if last + step < 0 else last + step, step)
            runs.append(Run(slice(start, stop), owner, source))
        start = stop
    return runs


@dataclass(frozen=True)
class Assembly:
    """How to build one padded block from its neighbouring chunks."""

    runs: tuple[tuple[Run, ...], ...]  # per axis
    shape: tuple[int, ...]
    dtype: np.dtype
    cval: float
    chunks: tuple[tuple[int, ...], ...]  # the chunk indices the task receives, in order

    @classmethod
    def plan(cls, runs: tuple[tuple[Run, ...], ...], dtype: np.dtype, cval: float) -> Assembly:
        shape = tuple(axis[-1].target.stop for axis in runs)
        needed = [sorted({r.chunk for r in axis if r.chunk is not None}) for axis in runs]
        return cls(runs, shape, np.dtype(dtype), cval, tuple(itertools.product(*needed)))

    def __call__(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """The padded block, from the arrays of `chunks` in order: one copy, cast to `dtype`."""
        source = dict(zip(self.chunks, arrays, strict=True))
        block = np.empty(self.shape, dtype=self.dtype)
        for combo in itertools.product(*self.runs):
            target = tuple(r.target for r in combo)
            owner = tuple(r.chunk for r in combo)
            if None in owner:
                block[target] = self.cval
            else:
                block[target] = source[owner][tuple(r.source for r in combo)]  # type: ignore[index]
        return block


def pad(array: np.ndarray, halo: Halo, mode: str, cval: float, dtype: np.dtype) -> np.ndarray:
    """Return a numpy array extended by `halo` on each axis as `mode` reads it, as `dtype`."""
    runs = tuple(axis_runs((n,), b, a, mode)[0] for n, (b, a) in zip(array.shape, halo, strict=True))
    return Assembly.plan(runs, dtype, cval)([array])


def padded_blocks(array: da.Array, halo: Halo, mode: str, cval: float, dtype: np.dtype) -> da.Array:
    """Return a dask array whose block ``i`` is input block ``i`` with its halo, as `dtype`.

    Block ``i`` holds exactly what a valid correlation needs to produce block
    ``i`` of the output: the chunk, the halo borrowed from its neighbours, and
    past the volume's edges the values `mode` makes up.  Each padded block is
    one task that copies slices of the chunks it reads straight into place.
    The chunks of `array` must already be `working_chunks`.
    """
    per_axis = [axis_runs(chunks, b, a, mode) for chunks, (b, a) in zip(array.chunks, halo, strict=True)]
    name = f"padded-{tokenize(array.name, halo, mode, cval, np.dtype(dtype).str)}"
    layer = {}
    for index in np.ndindex(*array.numblocks):
        assembly = Assembly.plan(tuple(runs[i] for runs, i in zip(per_axis, index, strict=True)), dtype, cval)
        layer[(name, *index)] = (assembly, [(array.name, *chunk) for chunk in assembly.chunks])
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[array])
    chunks = tuple(tuple(c + b + a for c in axis) for axis, (b, a) in zip(array.chunks, halo, strict=True))
    return da.Array(graph, name, chunks, meta=np.empty((0,) * array.ndim, dtype=dtype))
