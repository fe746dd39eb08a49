"""Waves: the blocks to store split into tiles of neighbouring blocks, computed one tile at a time.

dask's ordering of one graph over a whole halo-exchanging volume keeps input
chunks alive far longer than their neighbours need them, so a write is
computed in waves, which bounds memory by the wave.  On dask's in-process
schedulers (threads, synchronous) a wave hands the next one what both need,
such as the input chunks of their common halo, so every input chunk is read
and decoded once (`compute_waves`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask import local, threaded
from dask._expr import FinalizeCompute
from dask._task_spec import DataNode, GraphNode, convert_legacy_graph
from dask.base import collections_to_expr, get_scheduler
from dask.core import flatten
from dask.system import CPU_COUNT
from dask.utils import shorten_traceback

# Results are computed in waves of neighbouring blocks, each holding about
# this many bytes of output.  dask's ordering of one graph over a whole
# halo-exchanging volume keeps input chunks alive far longer than their
# neighbours need them, so peak memory grew with the volume; per wave it is
# bounded by the wave (benchmarks/RESULTS.md, "Memory").  A wave needs its
# neighbours' halo chunks too: local schedulers carry those the next wave shares
# (`compute_waves`), others read them again, so waves are made as large as this allows.
WAVE_BYTES = 128 * 2**20

# dask's schedulers that run in this process, where a wave's results can be kept for the next
# wave at no cost; any other (processes, a distributed Client) would ship them back and forth.
_IN_PROCESS = (threaded.get, local.get_sync)


def waves(
    stores: Sequence[tuple[da.Array, da.Array, list[tuple[int, ...]]]],
    wave_bytes: int | None = None,
    concurrency: int = 1,
) -> list[list[tuple[da.Array, list[tuple[int, ...]]]]]:
    """Split the blocks to store into waves of neighbouring blocks, in C order.

    `stores` holds, per output, its result, its block writes and the blocks to
    write.  Waves are tiles of the first result's block grid holding about
    `wave_bytes` (default `WAVE_BYTES`), and at least `concurrency` blocks
    (the tasks that run at once, each of which holds a block anyway): whole
    trailing axes first, so a wave is a slab whenever one fits.  Every
    output's blocks go to the wave of their first voxel, so outputs that
    share stages are computed together.  Results with fewer or more axes than
    the first (one file of a stack, written per file) cannot be placed in its
    grid: the first of each number of axes tiles those, in waves after the
    waves of the numbers of axes before.

    Examples
    --------
    >>> x = da.zeros((8, 4), chunks=2, dtype=np.uint8)
    >>> stores = [(x, x, list(np.ndindex(*x.numblocks)))]
    >>> [[blocks for _, blocks in wave] for wave in waves(stores, wave_bytes=16)]
    [[[(0, 0), (0, 1), (1, 0), (1, 1)]], [[(2, 0), (2, 1), (3, 0), (3, 1)]]]
    """
    if not stores:
        return []
    grids: dict[int, tuple[int, list[np.ndarray], tuple[int, ...]]] = {}  # per ndim: order, edges, tile
    for source, _, _ in stores:
        if source.ndim not in grids:
            block_bytes = math.prod(max(c) for c in source.chunks) * source.dtype.itemsize
            budget = max(WAVE_BYTES if wave_bytes is None else wave_bytes, concurrency * block_bytes)
            edges = [np.cumsum((0, *chunks)) for chunks in source.chunks]
            grids[source.ndim] = (
                len(grids),
                edges,
                _tile_blocks(source.chunks, source.dtype.itemsize, budget),
            )
    grouped: dict[tuple[int, ...], list[list[tuple[int, ...]]]] = {}
    for number, (source, _, blocks) in enumerate(stores):
        order, edges, tile = grids[source.ndim]
        starts = [np.cumsum((0, *chunks)) for chunks in source.chunks]
        for block in blocks:
            key = tuple(
                int(np.searchsorted(edge, start[i], side="right") - 1) // size
                for edge, start, i, size in zip(edges, starts, block, tile, strict=True)
            )
            grouped.setdefault((order, *key), [[] for _ in stores])[number].append(block)
    return [
        [(writes, blocks) for (_, writes, _), blocks in zip(stores, grouped[key], strict=True) if blocks]
        for key in sorted(grouped)
    ]


def compute_waves(collections: Sequence[Sequence[Any]], compute_kwargs: dict[str, Any]) -> None:
    """Compute each wave's dask collections in turn, as ``dask.compute(*wave, **compute_kwargs)`` would.

    On dask's threaded and synchronous schedulers, wave k also returns the
    values that wave k + 1 needs and shares with it (the input chunks of the
    halo between them), and those go into wave k + 1's graph in place of their
    tasks: each is computed once, and dropped after the wave that last needs
    it.  Other schedulers get one ``dask.compute`` per wave.

    Examples
    --------
    >>> x = da.arange(8, chunks=2)
    >>> seen = []
    >>> y = x.map_blocks(lambda b: seen.append(int(b[0])) or b, dtype=x.dtype)
    >>> halo = da.overlap.overlap(y, depth=1, boundary="none")
    >>> compute_waves([[halo.blocks[:2]], [halo.blocks[2:]]], {"scheduler": "synchronous"})
    >>> sorted(seen)  # block 2 is in both waves' halos, yet computed once
    [0, 2, 4, 6]
    """
    if not collections:
        return
    options = dict(compute_kwargs)
    scheduler = options.pop("scheduler", None)
    optimize_graph = options.pop("optimize_graph", True)
    options.pop("traverse", None)  # dask.compute's own keyword: the waves hold collections only
    # Chosen as dask.compute chooses: the scheduler named, else dask.config, else the default Client.
    get = get_scheduler(scheduler=scheduler, collections=list(collections[0]))
    if len(collections) == 1 or get not in _IN_PROCESS:
        for wave in collections:
            dask.compute(*wave, **compute_kwargs)
        return
    graph, keys = _wave_graph(collections[0], optimize_graph)
    for index in range(len(collections)):
        upcoming: tuple[dict[Any, GraphNode], list[Any]] = ({}, [])
        carry: list[Any] = []
        if index + 1 < len(collections):
            upcoming = _wave_graph(collections[index + 1], optimize_graph)
            carry = _frontier(graph, *upcoming)
        with shorten_traceback():
            values = get(graph, [*keys, *carry], **options)
        carried = zip(carry, values[len(keys) :], strict=True)
        # Replacing this wave's graph drops what the wave before carried into it.
        graph, keys = upcoming
        graph = _cull({**graph, **{key: DataNode(key, value) for key, value in carried}}, keys)
        del values


def _wave_graph(collections: Sequence[Any], optimize_graph: bool) -> tuple[dict[Any, GraphNode], list[Any]]:
    """The graph and output keys that ``dask.compute(*collections)`` would give the scheduler, unfused.

    Waves share tasks by key.  Low-level fusion merges a chain of tasks under
    a new key wherever the middle task has one dependent in that graph, and an
    input chunk at a wave's edge has one there while it has several in the
    next wave, so fused waves would share next to nothing.  It is off here
    (the blockwise fusion of array layers stays: it names layers alike in every
    wave).  Wave graphs are Delayed (`_only`), which dask culls without fusing
    anyway (their graphs are the same with fusion on); only an output that one
    wave of several writes whole, optimised as an array, loses fusion.
    A key still names one value in every graph, so a task that some other
    optimisation renames in one wave only runs twice, never gives a wrong value.
    """
    with dask.config.set({"optimization.fuse.active": False, "optimization.fuse.delayed": False}):
        expr = FinalizeCompute(collections_to_expr(list(collections), optimize_graph)).optimize()
        return convert_legacy_graph(expr.__dask_graph__()), list(flatten(expr.__dask_keys__()))


def _frontier(graph: dict[Any, GraphNode], upcoming: dict[Any, GraphNode], keys: list[Any]) -> list[Any]:
    """Keys of `graph` that `upcoming` needs: shared ones that an unshared task or an output depends on.

    Shared tasks that only shared tasks need are not returned: `upcoming`
    loses them once the returned keys stand in for their tasks.
    """
    shared = graph.keys() & upcoming.keys()
    needed = {key for key in keys if key in shared}
    for key, node in upcoming.items():
        if key not in shared:
            needed.update(dependency for dependency in node.dependencies if dependency in shared)
    return [key for key in upcoming if key in needed]  # graph order: deterministic across runs


def _cull(graph: dict[Any, GraphNode], keys: list[Any]) -> dict[Any, GraphNode]:
    """The part of `graph` that `keys` need."""
    kept: dict[Any, GraphNode] = {}
    pending = [key for key in keys if key in graph]
    while pending:
        key = pending.pop()
        if key not in kept:
            kept[key] = graph[key]
            pending.extend(d for d in graph[key].dependencies if d in graph and d not in kept)
    return kept


def concurrency(compute_kwargs: dict[str, Any]) -> int:
    """Tasks the scheduler of `compute_kwargs` runs at once: threads, processes or workers' threads."""
    scheduler = compute_kwargs.get("scheduler") or dask.config.get("scheduler", None)
    nthreads = getattr(scheduler, "nthreads", None)  # a distributed Client
    if callable(nthreads):
        return max(1, sum(nthreads().values()))
    if scheduler in ("sync", "synchronous", "single-threaded"):
        return 1
    return int(compute_kwargs.get("num_workers") or dask.config.get("num_workers", None) or CPU_COUNT)


def _tile_blocks(chunks: tuple[tuple[int, ...], ...], itemsize: int, wave_bytes: int) -> tuple[int, ...]:
    """Blocks per axis of a wave: whole trailing axes while they fit, then as many as fit."""
    tile = [1] * len(chunks)
    below = itemsize  # bytes of one index step of the axes already covered whole
    for axis in reversed(range(len(chunks))):
        # A wave is one block thick along the axes before this one.
        lead = math.prod(max(c) for c in chunks[:axis])
        whole = below * sum(chunks[axis])
        if whole * lead <= wave_bytes:
            tile[axis] = len(chunks[axis])
            below = whole
            continue
        tile[axis] = max(1, wave_bytes // (below * max(chunks[axis]) * lead))
        break
    return tuple(tile)
