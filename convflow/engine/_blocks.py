"""Block arrays: a stage as a function of block coordinates, whose tasks are made only for the blocks asked.

A dask array holds a task for every block of the volume before the first one
runs; over a 65536^3 volume of 128^3 chunks that is 134 million tasks per
layer, more than a machine's memory.  A `BlockArray` holds only what every
block shares (the chunks along each axis, the filters, the halo runs along
each axis), and makes the task of block ``i`` when it is asked for it
(`task`).  `block_graph` makes the tasks some blocks need, and nothing else:
one wave of a write.  The tasks are the dask array's tasks (the same padded
block assembly, the same fused filter, the same copies), so every block holds
the same values, byte for byte, as the dask array gives.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import GraphNode, convert_legacy_graph
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from convflow.engine import _halo
from convflow.engine._filter import Filter
from convflow.engine._fused import Pass, _block_function
from convflow.engine._stack import combine
from convflow.errors import ArgumentError

Index = tuple[int, ...]
Key = tuple[Any, ...]


class BlockArray:
    """An array known by its blocks: name, chunks and dtype, and the task of any one block.

    Attributes
    ----------
    name : str
        The first element of every block's key, ``(name, *index)``; equal
        names mean equal blocks (as in dask).
    chunks : tuple of tuple of int
        The blocks' sizes along each axis (dask's chunks).
    dtype : numpy.dtype
        The blocks' dtype.
    """

    def __init__(self, name: str, chunks: tuple[tuple[int, ...], ...], dtype: Any) -> None:
        self.name, self.chunks, self.dtype = name, tuple(tuple(c) for c in chunks), np.dtype(dtype)
        self.starts = tuple(tuple(itertools.accumulate(c[:-1], initial=0)) for c in self.chunks)

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(sum(c) for c in self.chunks)

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.chunks)

    @property
    def numblocks(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return tuple(len(c) for c in self.chunks)

    @property
    def size(self) -> int:
        """Number of values."""
        return math.prod(self.shape)

    def location(self, index: Index) -> tuple[tuple[int, int], ...]:
        """(start, stop) of block `index` along each axis."""
        return tuple((s[i], s[i] + c[i]) for s, c, i in zip(self.starts, self.chunks, index, strict=True))

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        """The legacy dask task of block `index` and the blocks it reads (their keys appear in it)."""
        raise NotImplementedError

    def key(self, index: Index) -> Key:
        """The key of block `index`."""
        return (self.name, *index)

    def inputs(self) -> tuple[BlockArray, ...]:
        """The block arrays this one reads."""
        return tuple(getattr(self, "sources", ())) + ((self.source,) if hasattr(self, "source") else ())


class Source(BlockArray):
    """Blocks read from an array-like by slicing, as ``da.from_array`` reads them."""

    def __init__(self, name: str, chunks: tuple[tuple[int, ...], ...], dtype: Any, reader: Any) -> None:
        super().__init__(name, chunks, dtype)
        self.reader = reader

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        region = tuple(slice(a, b) for a, b in self.location(index))
        return (_read, self.reader, region), []


def _read(reader: Any, region: tuple[slice, ...]) -> np.ndarray:
    """One block of an array-like."""
    return np.asarray(reader[region])


class DaskSource(BlockArray):
    """The blocks of a dask array: its graph, culled to the blocks a wave needs (`block_graph`).

    Culling a dask graph costs its size, so this is the way in for arrays
    that a caller built with dask, not for volumes of millions of chunks.
    """

    def __init__(self, array: da.Array) -> None:
        super().__init__(array.name, array.chunks, array.dtype)
        self.array = array


def from_dask(array: da.Array) -> BlockArray:
    """A `Source` over the array-like `array` slices, when it is just that (`sliced`), else a `DaskSource`."""
    reader = getattr(array, _READER, None)
    if reader is not None and reader[0] == array.name:
        return Source(array.name, array.chunks, array.dtype, reader[1])
    graph = array.__dask_graph__()
    original = f"original-{array.name}"  # what da.from_array makes, unless the array-like is inlined
    if isinstance(graph, HighLevelGraph) and set(graph.layers) == {array.name, original}:
        mapping = getattr(graph.layers[original], "mapping", {})
        if list(mapping) == [original]:
            return Source(array.name, array.chunks, array.dtype, mapping[original])
    return DaskSource(array)


# The attribute of a dask array that `sliced` sets: its name and the array-like it slices.
_READER = "_convflow_reader"


def sliced(array: da.Array, reader: Any) -> da.Array:
    """Mark `array` (``da.from_array(reader, ...)``) as `reader` sliced block by block, for `from_dask`.

    Examples
    --------
    >>> data = np.arange(6)
    >>> type(from_dask(sliced(da.from_array(data, chunks=2, inline_array=True), data))).__name__
    'Source'
    """
    setattr(array, _READER, (array.name, reader))
    return array


class Regrid(BlockArray):
    """`source` cut into other `chunks` (dask's rechunk): each block copied from the pieces it covers."""

    def __init__(self, source: BlockArray, chunks: tuple[tuple[int, ...], ...]) -> None:
        super().__init__(f"regrid-{tokenize(source.name, chunks)}", chunks, source.dtype)
        self.source = source
        self.pieces = [_axis_pieces(s, c) for s, c in zip(source.chunks, self.chunks, strict=True)]

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        per_axis = [pieces[i] for pieces, i in zip(self.pieces, index, strict=True)]
        shape = tuple(c[i] for c, i in zip(self.chunks, index, strict=True))
        plan, reads = [], []
        for combo in itertools.product(*per_axis):
            reads.append(tuple(p[0] for p in combo))
            plan.append((tuple(p[1] for p in combo), tuple(p[2] for p in combo)))
        spec = (shape, self.dtype, tuple(plan))
        return (_assemble, spec, [self.source.key(r) for r in reads]), [(self.source, r) for r in reads]


def _axis_pieces(source: tuple[int, ...], target: tuple[int, ...]) -> list[list[tuple[int, slice, slice]]]:
    """For each target chunk along an axis: its (source chunk, slice of it, slice of the target) pieces.

    Examples
    --------
    >>> [[(chunk, s.start, s.stop) for chunk, s, _ in pieces] for pieces in _axis_pieces((2, 2), (3, 1))]
    [[(0, 0, 2), (1, 0, 1)], [(1, 1, 2)]]
    """
    edges = [int(e) for e in np.cumsum((0, *source))]
    result, start = [], 0
    for size in target:
        stop = start + size
        first = min(max(int(np.searchsorted(edges, start, side="right")) - 1, 0), len(source) - 1)
        pieces = [(first, slice(0, 0), slice(0, 0))] if not size else []
        for chunk in range(first, len(source)) if size else ():
            lo, hi = max(start, edges[chunk]), min(stop, edges[chunk + 1])
            if lo >= hi:
                break
            pieces.append((chunk, slice(lo - edges[chunk], hi - edges[chunk]), slice(lo - start, hi - start)))
        result.append(pieces)
        start = stop
    return result


def _assemble(spec: tuple[Any, ...], arrays: Sequence[np.ndarray]) -> np.ndarray:
    """A block made of pieces of other blocks, each copied once."""
    shape, dtype, plan = spec
    if len(plan) == 1 and arrays[0].shape == shape:
        return arrays[0]
    block = np.empty(shape, dtype=dtype)
    for (source, target), array in zip(plan, arrays, strict=True):
        block[target] = array[source]
    return block


class Strided(BlockArray):
    """Every `steps`-th value of `source` from `first` on (default 0), as many as `chunks` hold.

    Along an axis that is ``source[first : first + m * step : step]`` for the
    ``m`` values of `chunks`: a subsample (every second pixel of a pyramid
    level) or, with step 1, a trim (a ``valid`` result).  Each block copies
    the pieces of the source blocks it covers; a block that is one whole
    source block is that block.

    Examples
    --------
    >>> x = from_dask(da.from_array(np.arange(10.0), chunks=4, name="x"))
    >>> half = Strided(x, (2,), ((3, 2),))
    >>> half.shape, [read for _, read in half.task((1,))[1]]
    ((5,), [(1,), (2,)])
    >>> to_dask(Strided(x, (1,), ((3, 4),), first=(2,))).compute()
    array([2., 3., 4., 5., 6., 7., 8.])
    """

    def __init__(
        self,
        source: BlockArray,
        steps: tuple[int, ...],
        chunks: tuple[tuple[int, ...], ...],
        first: tuple[int, ...] | None = None,
    ) -> None:
        first = first if first is not None else (0,) * source.ndim
        super().__init__(f"strided-{tokenize(source.name, steps, chunks, first)}", chunks, source.dtype)
        self.source = source
        self.pieces = [
            _strided_pieces(c, f, t, o)
            for c, f, t, o in zip(source.chunks, steps, self.chunks, first, strict=True)
        ]

    task = Regrid.task  # the same copying of pieces, only the pieces are strided


def _strided_pieces(
    source: tuple[int, ...], step: int, target: tuple[int, ...], first: int = 0
) -> list[list[tuple[int, slice, slice]]]:
    """`_axis_pieces` of ``[first : : step]`` of an axis of `source` chunks, cut into `target`.

    Examples
    --------
    >>> [[(chunk, s.start, s.stop, s.step) for chunk, s, _ in p] for p in _strided_pieces((3, 3), 2, (2, 1))]
    [[(0, 0, 3, 2)], [(1, 1, 2, 2)]]
    """
    edges = [int(e) for e in np.cumsum((0, *source))]
    result, start = [], 0
    for size in target:
        stop = start + size
        pieces = []
        begin = int(np.searchsorted(edges, first + start * step, side="right")) - 1
        for chunk in range(begin, len(source)):
            lo = max(start, -(-(edges[chunk] - first) // step))
            hi = min(stop, -(-(edges[chunk + 1] - first) // step))
            if lo >= stop:
                break
            if lo < hi:
                within = slice(
                    first + lo * step - edges[chunk], first + (hi - 1) * step - edges[chunk] + 1, step
                )
                pieces.append((chunk, within, slice(lo - start, hi - start)))
        result.append(pieces)
        start = stop
    return result


class Padded(BlockArray):
    """Block ``i`` of `source` with its halo, as `mode` reads past the volume (`_halo.padded_blocks`)."""

    def __init__(self, source: BlockArray, halo: _halo.Halo, mode: str, cval: float, dtype: Any) -> None:
        chunks = tuple(
            tuple(c + b + a for c in axis) for axis, (b, a) in zip(source.chunks, halo, strict=True)
        )
        super().__init__(
            f"padded-{tokenize(source.name, halo, mode, cval, np.dtype(dtype).str)}", chunks, dtype
        )
        self.source, self.cval = source, cval
        self.runs = [_halo.axis_runs(c, b, a, mode) for c, (b, a) in zip(source.chunks, halo, strict=True)]

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        runs = tuple(axis[i] for axis, i in zip(self.runs, index, strict=True))
        assembly = _halo.Assembly.plan(runs, self.dtype, self.cval)
        reads = list(assembly.chunks)
        return (assembly, [self.source.key(r) for r in reads]), [(self.source, r) for r in reads]


class Map(BlockArray):
    """A function of the same block of each source: ``function(*blocks, **arguments(index))``."""

    def __init__(
        self,
        function: Callable[..., np.ndarray],
        sources: Sequence[BlockArray],
        dtype: Any,
        *,
        name: str,
        chunks: tuple[tuple[int, ...], ...] | None = None,
        arguments: Callable[[BlockArray, Index], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(name, chunks if chunks is not None else sources[0].chunks, dtype)
        self.function, self.sources, self.arguments = function, tuple(sources), arguments

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        function = self.function
        if self.arguments is not None:
            function = functools.partial(function, **self.arguments(self, index))
        return (function, *(s.key(index) for s in self.sources)), [(s, index) for s in self.sources]


def filter_blocks(image: BlockArray, passes: Sequence[Pass]) -> BlockArray:
    """`run_filters` over a `BlockArray`: the same passes, the same tasks per block.

    `passes` are `describe_stack`'s for this image's chunks.
    """
    filters: list[Filter] = [f for step in passes for f in step.filters]
    compute_dtype = filters[0].compute_dtype
    if image.size == 0:  # as run_filters: nothing to filter
        dtype = filters[-1].result_dtype
        return Map(functools.partial(np.asarray, dtype=dtype), [image], dtype, name=f"empty-{image.name}")
    for number, step in enumerate(passes):
        out_dtype = filters[-1].result_dtype if number == len(passes) - 1 else compute_dtype
        source = image if step.chunks == image.chunks else Regrid(image, step.chunks)
        first = step.filters[0]
        padded = Padded(source, step.halo, first.mode, first.cval, compute_dtype)
        function = _block_function(image, step, compute_dtype, out_dtype)
        name = f"fused-{tokenize(padded.name, step.filters, step.methods, np.dtype(out_dtype).str)}"
        result: BlockArray = Map(
            function, [padded], out_dtype, name=name, chunks=step.chunks, arguments=_corner
        )
        image = result if step.chunks == image.chunks else Regrid(result, image.chunks)
    return image


def _corner(array: BlockArray, index: Index) -> dict[str, Any]:
    """`_fused_block`'s `starts` and `block_id` for one block, as map_blocks passes them."""
    return {
        "starts": tuple((s[i],) for s, i in zip(array.starts, index, strict=True)),
        "block_id": (0,) * len(index),
    }


def combine_blocks(op: str, sources: Sequence[BlockArray], **parameters: Any) -> BlockArray:
    """`combine` block by block (an element-wise op: each block is `combine` of the sources' blocks)."""
    shapes = {s.shape for s in sources}
    if len(shapes) > 1:  # what `combine` checks of whole arrays, checked here of the blocks' arrays
        raise ArgumentError(f"combine {op!r} needs images of one shape, got shapes {sorted(shapes)}")
    chunks = sources[0].chunks
    aligned = [s if s.chunks == chunks else Regrid(s, chunks) for s in sources]
    probe = combine(op, *(np.zeros((1,) * s.ndim, s.dtype) for s in sources), **parameters)
    function = functools.partial(combine, op, **parameters)
    name = f"combine-{tokenize(op, parameters, [s.name for s in aligned])}"
    return Map(function, aligned, probe.dtype, name=name)


def take_blocks(source: BlockArray, position: int) -> BlockArray:
    """``source[position]``: the leading axis dropped at one position."""
    block = int(np.searchsorted(np.cumsum(source.chunks[0]), position, side="right"))
    return _Take(source, block, position - source.starts[0][block])


class _Take(BlockArray):
    """`take_blocks`'s blocks: each the slice of one block of the source at one leading position."""

    def __init__(self, source: BlockArray, block: int, offset: int) -> None:
        super().__init__(f"take-{tokenize(source.name, block, offset)}", source.chunks[1:], source.dtype)
        self.source, self.block, self.offset = source, block, offset

    def task(self, index: Index) -> tuple[Any, list[tuple[BlockArray, Index]]]:
        read = (self.block, *index)
        return (_leading, self.source.key(read), self.offset), [(self.source, read)]


def _leading(block: np.ndarray, offset: int) -> np.ndarray:
    return block[offset]


def block_graph(
    targets: Iterable[tuple[BlockArray, Iterable[Index]]],
) -> tuple[dict[Any, GraphNode], list[Key]]:
    """The tasks that the blocks of `targets` need, and those blocks' keys: nothing more is made.

    Examples
    --------
    >>> x = from_dask(da.from_array(np.arange(8.0), chunks=2, name="x"))
    >>> graph, keys = block_graph([(Regrid(x, ((3, 5),)), [(0,)])])
    >>> sorted(key[1:] for key in graph if key[0] == "x")  # block 0 of 2 needs blocks 0, 1 of x
    [(0,), (1,)]
    """
    tasks: dict[Any, Any] = {}
    culled: dict[DaskSource, set[Key]] = {}
    keys: list[Key] = []
    pending: list[tuple[BlockArray, Index]] = []
    for array, blocks in targets:
        for block in blocks:
            keys.append(array.key(block))
            pending.append((array, block))
    while pending:
        array, block = pending.pop()
        key = array.key(block)
        if key in tasks:
            continue
        if isinstance(array, DaskSource):
            culled.setdefault(array, set()).add(key)
            tasks[key] = None
            continue
        tasks[key], reads = array.task(block)
        pending.extend(reads)
    for source, wanted in culled.items():
        for key in wanted:
            del tasks[key]
        tasks.update(dict(source.array.__dask_graph__().cull(wanted)))
    return convert_legacy_graph(tasks), keys


def to_dask(array: BlockArray) -> da.Array:
    """A dask array of `array`'s blocks, every task made now: for arrays of moderate size."""
    graph, _ = block_graph([(array, list(np.ndindex(*array.numblocks)))])
    meta = np.empty((0,) * array.ndim, dtype=array.dtype)
    return da.Array(
        HighLevelGraph.from_collections(array.name, graph, ()), array.name, array.chunks, meta=meta
    )
