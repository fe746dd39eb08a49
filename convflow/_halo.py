"""Halos: how far a kernel reads past a block, and how blocks get them.

This is the one module that speaks dask's words (`depth`, `boundary`).  A
filtered block is computed as a *valid* correlation of a padded block: the
block's own values, the halo borrowed from its neighbours, and, at the edge
of the volume, values made up by the boundary mode.  The volume is extended
by the mode first (only the thin slabs past its edges are made), and the
extensions are merged into the edge chunks; dask's overlap then exchanges
plain neighbour data, so every mode, origin and halo size goes one way.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from convflow._modes import is_constant, source_index

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


def extend(array: Any, halo: Halo, mode: str, cval: float) -> Any:
    """Extend a numpy or dask array by `halo` on each axis as `mode` reads it."""
    xp = da if isinstance(array, da.Array) else np
    for axis, (before, after) in enumerate(halo):
        if before == 0 and after == 0:
            continue
        size = array.shape[axis]
        pieces = []
        for start, stop in ((-before, 0), (size, size + after)):
            if stop == start:
                pieces.append(None)
                continue
            if is_constant(mode):
                shape = list(array.shape)
                shape[axis] = stop - start
                pieces.append(xp.full(tuple(shape), cval, dtype=array.dtype))
            else:
                index = source_index(np.arange(start, stop), size, mode)
                pieces.append(xp.take(array, index, axis=axis))
        parts = [p for p in (pieces[0], array, pieces[1]) if p is not None]
        array = xp.concatenate(parts, axis=axis)
    return array


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


def padded_blocks(array: da.Array, halo: Halo, mode: str, cval: float) -> da.Array:
    """Return a dask array whose block ``i`` is input block ``i`` with its halo.

    Block ``i`` holds exactly what a valid correlation needs to produce block
    ``i`` of the output: the chunk, the halo borrowed from its neighbours, and
    past the volume's edges the values `mode` makes up.  The chunks of
    `array` must already be `working_chunks`.
    """
    padded = extend(array, halo, mode, cval)
    # Merge each extension into the edge chunk it borders, so block i of the
    # padded array starts exactly `before` values ahead of output block i.
    edge_merged = []
    for chunks, (before, after) in zip(array.chunks, halo, strict=True):
        merged = list(chunks)
        merged[0] += before
        merged[-1] += after
        edge_merged.append(tuple(merged))
    padded = padded.rechunk(tuple(edge_merged))
    depth = {axis: h for axis, h in enumerate(halo) if h != (0, 0)}
    if not depth:
        return padded
    return da.overlap.overlap(
        padded,
        depth=depth,
        boundary=dict.fromkeys(depth, "none"),
        allow_rechunk=False,
    )
