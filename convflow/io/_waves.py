"""Waves: the blocks to store split into tiles of neighbouring blocks, computed one tile at a time.

dask's ordering of one graph over a whole halo-exchanging volume keeps input
chunks alive far longer than their neighbours need them, so a write is
computed in waves, which bounds memory by the wave.  On dask's in-process
schedulers (threads, synchronous) a wave hands the next one what both need,
such as the input chunks of their common halo, so every input chunk is read
and decoded once (`compute_waves`).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask import local, threaded
from dask._expr import FinalizeCompute
from dask._task_spec import GraphNode, Task, convert_legacy_graph
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
    write.  The waves are `tile_waves`' over those results, keeping the
    blocks listed.

    Examples
    --------
    >>> x = da.zeros((8, 4), chunks=2, dtype=np.uint8)
    >>> stores = [(x, x, list(np.ndindex(*x.numblocks)))]
    >>> [[blocks for _, blocks in wave] for wave in waves(stores, wave_bytes=16)]
    [[[(0, 0), (0, 1), (1, 0), (1, 1)]], [[(2, 0), (2, 1), (3, 0), (3, 1)]]]
    """
    wanted = [set(blocks) for _, _, blocks in stores]
    todo = [w.__contains__ for w in wanted]
    grids = [source for source, _, _ in stores]
    return [
        [(stores[number][1], blocks) for number, blocks in wave]
        for wave in tile_waves(grids, todo, wave_bytes, concurrency)
    ]


def tile_waves(
    arrays: Sequence[Any],
    todo: Sequence[Callable[[tuple[int, ...]], bool] | None] | None = None,
    wave_bytes: int | None = None,
    concurrency: int = 1,
) -> Iterator[list[tuple[int, list[tuple[int, ...]]]]]:
    """Yield the waves of blocks to store, one at a time: per wave, (array number, its blocks) pairs.

    `arrays` (anything with ``chunks``, ``ndim`` and ``dtype``) are the
    results of the outputs; ``todo[i](block)`` says whether block `block` of
    array `i` is still to be stored (all are, where it is None).  Waves are
    tiles of the first array's block grid holding about `wave_bytes`
    (default `WAVE_BYTES`), and at least `concurrency` blocks (the tasks that
    run at once, each of which holds a block anyway): whole trailing axes
    first, so a wave is a slab whenever one fits.  Every array's blocks go to
    the wave of their first voxel, so outputs that share stages are computed
    together.  Arrays with fewer or more axes than the first (one file of a
    stack, written per file) cannot be placed in its grid: the first of each
    number of axes tiles those, in waves after the waves of the numbers of
    axes before.  Nothing is listed up front: each wave's blocks are found
    from the tile's coordinates, so a volume of any number of chunks costs
    the same per wave.

    Examples
    --------
    >>> x = da.zeros((8, 4), chunks=2, dtype=np.uint8)
    >>> [wave for wave in tile_waves([x], wave_bytes=16)][1]
    [(0, [(2, 0), (2, 1), (3, 0), (3, 1)])]
    """
    todo = list(todo) if todo is not None else [None] * len(arrays)
    for _, first, tile in _grids(arrays, wave_bytes, concurrency):
        members = [i for i, a in enumerate(arrays) if a.ndim == first.ndim]
        edges = [np.cumsum((0, *c)) for c in first.chunks]
        starts = {i: [np.cumsum((0, *c[:-1])) for c in arrays[i].chunks] for i in members}
        counts = [-(-len(c) // size) for c, size in zip(first.chunks, tile, strict=True)]
        for corner in np.ndindex(*counts):
            wave = []
            for i in members:
                ranges = []
                for axis, (t, size) in enumerate(zip(corner, tile, strict=True)):
                    lo = edges[axis][t * size]
                    last = (t + 1) * size >= len(first.chunks[axis])
                    hi = np.inf if last else edges[axis][(t + 1) * size]
                    begin = int(np.searchsorted(starts[i][axis], lo, side="left")) if t else 0
                    ranges.append(range(begin, int(np.searchsorted(starts[i][axis], hi, side="left"))))
                check = todo[i]
                blocks = [b for b in itertools.product(*ranges) if check is None or check(b)]
                if blocks:
                    wave.append((i, blocks))
            if wave:
                yield wave


def count_waves(arrays: Sequence[Any], wave_bytes: int | None = None, concurrency: int = 1) -> int:
    """The number of waves `tile_waves` yields for `arrays` when every block is to be stored.

    Examples
    --------
    >>> count_waves([da.zeros((8, 4), chunks=2, dtype=np.uint8)], wave_bytes=16)
    2
    """
    return sum(
        math.prod(-(-len(c) // size) for c, size in zip(first.chunks, tile, strict=True))
        for _, first, tile in _grids(arrays, wave_bytes, concurrency)
    )


def wave_tiles(
    arrays: Sequence[Any], wave_bytes: int | None = None, concurrency: int = 1
) -> list[tuple[int, ...]]:
    """The tile (blocks per axis) of each number of axes' waves, in `tile_waves`' order.

    Examples
    --------
    >>> wave_tiles([da.zeros((8, 4), chunks=2, dtype=np.uint8)], wave_bytes=16)
    [(2, 2)]
    """
    return [tile for _, _, tile in _grids(arrays, wave_bytes, concurrency)]


def _grids(
    arrays: Sequence[Any], wave_bytes: int | None, concurrency: int
) -> list[tuple[int, Any, tuple[int, ...]]]:
    """Per number of axes, in order of first appearance: its number, the array that tiles it, and the tile."""
    grids: dict[int, tuple[int, Any, tuple[int, ...]]] = {}
    for array in arrays:
        if array.ndim not in grids:
            block_bytes = math.prod(max(c) for c in array.chunks) * array.dtype.itemsize
            budget = max(WAVE_BYTES if wave_bytes is None else wave_bytes, concurrency * block_bytes)
            grids[array.ndim] = (len(grids), array, _tile_blocks(array.chunks, array.dtype.itemsize, budget))
    return list(grids.values())


def compute_waves(collections: Sequence[Sequence[Any]], compute_kwargs: dict[str, Any]) -> None:
    """Compute each wave's dask collections in turn, as ``dask.compute(*wave, **compute_kwargs)`` would.

    On dask's threaded and synchronous schedulers, wave k also returns the
    values that wave k + 1 needs and shares with it (the input chunks of the
    halo between them), and those go into wave k + 1's graph in place of their
    tasks: each is computed once, and dropped as soon as the last task that
    needs it is done.  Other schedulers get one ``dask.compute`` per wave.

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
    _carry((_wave_graph(wave, optimize_graph) for wave in collections), get, options)


Graph = tuple[dict[Any, GraphNode], list[Any]]


def compute_graphs(
    graphs: Iterable[Graph],
    compute_kwargs: dict[str, Any],
    finished: Callable[[int], None] | None = None,
    in_flight: int = 2,
) -> None:
    """Compute each wave's graph and keys in turn on the scheduler of `compute_kwargs`.

    `graphs` may be a generator: one wave's graph is made while the wave
    before runs, never more.  On dask's threaded and synchronous schedulers a
    wave hands the next one what both need, as in `compute_waves`.  A
    distributed Client gets up to `in_flight` waves at once, earlier ones
    first, so its workers never wait for the next graph; other schedulers
    one wave at a time.  ``finished(number)`` is called as wave `number`
    (counted from 0) is done.

    Examples
    --------
    >>> from dask._task_spec import Task
    >>> waves = (({("w", i): Task(("w", i), abs, -i)}, [("w", i)]) for i in range(3))
    >>> done = []
    >>> compute_graphs(waves, {"scheduler": "synchronous"}, done.append)
    >>> done
    [0, 1, 2]
    """
    options = dict(compute_kwargs)
    scheduler = options.pop("scheduler", None)
    options.pop("optimize_graph", None)  # the graphs are made for the blocks: nothing to optimise
    options.pop("traverse", None)
    get = get_scheduler(scheduler=scheduler) or threaded.get
    report = finished or (lambda number: None)
    if get in _IN_PROCESS:
        _carry(graphs, get, options, report)
    elif hasattr(scheduler, "gather") and hasattr(scheduler, "get"):  # a distributed Client
        running: list[tuple[int, Any]] = []
        for number, (graph, keys) in enumerate(graphs):
            while len(running) >= max(in_flight, 1):
                _wait(scheduler, running.pop(0), report)
            running.append((number, scheduler.get(graph, keys, sync=False, priority=-number, **options)))
        while running:
            _wait(scheduler, running.pop(0), report)
    else:
        for number, (graph, keys) in enumerate(graphs):
            with shorten_traceback():
                get(graph, keys, **options)
            report(number)


def _wait(client: Any, wave: tuple[int, Any], report: Callable[[int], None]) -> None:
    """Wait for one wave's futures on a Client, then let them go."""
    number, futures = wave
    with shorten_traceback():
        client.gather(futures)
    for future in flatten(futures):
        future.release()
    report(number)


def _carry(
    graphs: Iterable[Graph], get: Any, options: dict[str, Any], report: Callable[[int], None] | None = None
) -> None:
    """Compute wave after wave in this process, each handing the next the values both need."""
    waves = iter(graphs)
    current = next(waves, None)
    number = 0
    while current is not None:
        graph, keys = current
        upcoming = next(waves, None)
        carry = _frontier(graph, *upcoming) if upcoming is not None else []
        with shorten_traceback():
            values = get(graph, [*keys, *carry], **options)
        if report is not None:
            report(number)
        number += 1
        current = None
        if upcoming is not None:
            carried = _handed(dict(zip(carry, values[len(keys) :], strict=True)))
            graph, keys = upcoming
            current = (_cull({**graph, **carried}, keys), keys)
        del values, graph


def _handed(values: dict[Any, Any]) -> dict[Any, Task]:
    """Tasks that hand the next wave `values`, each let go of as its task runs.

    As data nodes, the values would live as long as the wave's graph; as tasks
    that take them out of `values`, the scheduler drops each once the last
    task of the wave that needs it is done, as it drops any result.
    """
    return {key: Task(key, functools.partial(values.pop, key)) for key in values}


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
