"""write_output(), write_outputs(): compute results into zarr, OME-Zarr or TIFF, safely and resumably.

`write_outputs` stores several results together: every zarr output is
checked and created first, then their block writes go to the scheduler wave
by wave, each wave one graph in which tasks that outputs share (same keys)
run once; only then is each output marked complete.  A pipeline that writes
a stage and also something derived from it thus filters that stage once.
tifffile writes a TIFF's tiles in file order only, so a TIFF output is
computed into a zarr array beside it (its staging array,
`OutputPlan.staging`), from which the TIFF is then written band by band, and
which is removed once the TIFF is finished.  A resume thus finds a TIFF's
stored blocks there.  `write_output` is `write_outputs` with one job.

The waves are tiles of neighbouring blocks (`tile_waves`), found from the
tiles' coordinates as they come, and each wave's tasks are made for its
blocks only (`block_graph`): neither memory nor the tasks sent at once grow
with the volume.  On dask's in-process schedulers (threads, synchronous) a
wave hands the next one what both need, such as the input chunks of their
common halo, so every input chunk is read and decoded once (`compute_graphs`).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask._task_spec import List, Task, TaskRef
from dask.base import tokenize
from numpy.typing import DTypeLike

from convflow.engine import BlockArray, block_graph, cast_result, from_dask
from convflow.engine._blocks import Map, Regrid
from convflow.errors import ConvflowError, OutputError
from convflow.io import _lease, _ome, _stores, _tiff, _zarr
from convflow.io._chunks import ChunkFiles, read_array, remove_scratch, scratch_path
from convflow.io._image import InputImage
from convflow.io._provenance import finished_record
from convflow.io._record import read_done, record_path, remove_record, write_done
from convflow.io._target import TIFF_FORMATS, Layout, OutputPlan, check_output
from convflow.io._waves import Graph, compute_graphs, concurrency, tile_waves, wave_tiles

# A staging array lives until its TIFF is written: fast compression beats small.
_STAGING_CODEC = ("zstd", 1)
# Where a folder is renamed to while it is removed (`_remove`), and where an output is made (`_create_whole`).
_REMOVING, _CREATING = ".convflow-removing", ".convflow-creating"


@dataclass(frozen=True)
class WriteReport:
    """What `write_output` did.

    Attributes
    ----------
    path, format : str
        The output and its format.
    status : str
        ``written`` (a full write), ``resumed`` (an incomplete output
        finished) or ``complete`` (resume on a finished output: nothing done).
    blocks_written, blocks_total : int
        Blocks computed and written by this call, and blocks in the output.
    record : dict
        The provenance stored under the output's ``convflow`` key.
    """

    path: str
    format: str
    status: str
    blocks_written: int
    blocks_total: int
    record: dict[str, Any]


def write_output(
    array: Any,
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    dtype: DTypeLike | None = None,
    chunks: int | Sequence[int] | None = None,
    compression: str | dict[str, Any] | None = None,
    axes: str | None = None,
    scale: Sequence[float] | None = None,
    translation: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    pyramid_levels: int = 1,
    pyramid_method: str = "mean",
    shards: int | Sequence[int] | None = None,
    inputs: Sequence[InputImage | str | os.PathLike[str]] = (),
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    compute_kwargs: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> WriteReport:
    """Compute `array` into an output file, block by block, with provenance.

    Integer `dtype` results are rounded half to even and clipped to the
    dtype's range, inside the write tasks. Every check (`check_output`)
    happens before anything is computed. While it is written, the output's
    ``convflow`` record says ``"incomplete": true``; the flag goes only once
    the last block is stored, so an interrupted run never looks complete.
    One writer per output: the call holds a lease on the output
    (``X.convflow-lease`` beside it: host, process, start time, config
    hash) from before anything is removed or created until it returns, and
    any other writer onto it refuses while the holder lives. A killed
    holder's lease is taken over, so `resume` needs no manual step.

    Parameters
    ----------
    array : dask array or array-like
        The result; a dask array is computed block by block, never whole.
    path : str or path-like
        Where to write. The format follows the name unless `format` is given:
        ``.ome.zarr`` OME-Zarr, ``.zarr`` zarr v3, ``.tif``/``.tiff`` TIFF.
        Zarr and OME-Zarr outputs may be URLs of object stores
        (``s3://bucket/out.zarr``, ``gs://...``) or ``file://`` URLs; there
        the lease is an object beside the output, taken with a conditional put.
    format : {'zarr', 'zarr-v2', 'ome-zarr', 'ome-zarr-v0.5', 'tiff', 'bigtiff'}, optional
        ``ome-zarr`` writes OME-NGFF 0.4 (zarr v2), which most viewers read;
        ``ome-zarr-v0.5`` NGFF 0.5 (zarr v3). ``tiff`` becomes BigTIFF past
        4 GiB.
    dtype : dtype, optional
        The stored dtype. Default: the array's (uint8 for bool).
    chunks : int or sequence of int, optional
        Storage chunks (zarr) or, by the last two entries, tiles (TIFF, which
        must be multiples of 16). Default: the array's chunks (zarr) and
        256 x 256 tiles (TIFF). The array is rechunked to the storage chunks
        unless its chunks are already multiples of them, so no two tasks ever
        write one stored chunk.
    compression : str or dict, optional
        ``{'codec': name, 'level': n}`` or a codec name; ``'none'`` stores raw.
        zarr: ``zstd`` (default, level 3), ``gzip``, ``blosc`` (zstd inside).
        TIFF: ``zlib`` (default), ``zstd`` and ``lzw`` (both need imagecodecs).
    axes : str, optional
        One letter per axis. Default: the axes of the first input in `inputs`
        with as many axes, else the spec's default (``yx``, ``zyx``, ...).
    scale, translation : sequence of float, optional
        Physical pixel size and offset per axis (OME-Zarr metadata). Default:
        carried from that same input.
    units : sequence of str or None, optional
        Unit per axis, e.g. ``("micrometer",) * 3``. Default: from the input.
    pyramid_levels : int, default 1
        OME-Zarr only: levels in all, each half the previous one along the
        spatial axes; level ``"0"`` is full resolution. Each level is written
        wave by wave from the stored level before it.
    pyramid_method : {"mean", "gaussian"}, default "mean"
        How a level is made from the one before: the mean of each 2x block,
        or a Gaussian blur (sigma 2/3, as ``skimage.transform.pyramid_gaussian``)
        then every second pixel.
    shards : int or sequence of int, optional
        zarr v3 and OME-Zarr 0.5 only: store the chunks in shards of this
        shape, each a whole number of `chunks` per axis (-1: the whole
        axis), one file per shard (``zarr.create_array(..., shards=...)``).
        Each shard is encoded by zarr's sharding codec and written whole by
        one task: the result is computed in blocks of whole shards, so a
        block holds at least a shard in memory. A resume finds finished
        shards as a plain output finds chunks. Default: no shards, one file
        per chunk.
    inputs : sequence of InputImage or path, optional
        The inputs the result came from: recorded in the provenance, and the
        output may not be one of them, lie inside one, or contain one.
    provenance : dict, optional
        JSON-able run description (e.g. ``{"config": ..., "kernels": ...}``),
        stored under the ``convflow`` key beside the version, inputs, output
        layout, and start and end times. A resume must give the same.
    overwrite : bool, default False
        Replace an existing output (the CLI's ``--overwrite``).
    resume : bool, default False
        Finish an incomplete output, computing only the blocks not yet stored
        (``--resume``); a complete output is left as it is. OME-Zarr pyramid
        levels are computed again from level "0". A TIFF output's blocks are
        stored first in a zarr array beside it (``X.tif.convflow-partial.zarr``),
        which a resume finishes; the TIFF is then written from it, and the
        array removed. Until then the run needs room for both.
    compute_kwargs : dict, optional
        Passed to ``dask.compute``, e.g. ``{"scheduler": "threads"}``.
    storage_options : dict, optional
        For a URL: the options of its store (as for `open_input`); never
        recorded in the provenance or shown in a message.

    Returns
    -------
    WriteReport
        Status, blocks written, and the stored provenance record.

    Raises
    ------
    OutputLockedError
        Another live run (or call) is writing the output; nothing was touched.
    OutputExistsError, OutputPathError, ResumeError, ArgumentError
        From `check_output`, before anything is computed.
    OutputError
        The output could not be written (unwritable path, full disk).

    See Also
    --------
    write_outputs : several results in one compute, sharing their common stages.
    check_output, open_input

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "out.zarr")
    >>> report = write_output(np.array([[0.4, 1.5], [2.5, 300.0]]), path, dtype="uint8")
    >>> report.status, report.record["output"]["dtype"]
    ('written', 'uint8')
    >>> zarr.open_array(path)[:]
    array([[  0,   2],
           [  2, 255]], dtype=uint8)
    """
    options = {
        "format": format,
        "dtype": dtype,
        "chunks": chunks,
        "compression": compression,
        "axes": axes,
        "scale": scale,
        "translation": translation,
        "units": units,
        "pyramid_levels": pyramid_levels,
        "pyramid_method": pyramid_method,
        "shards": shards,
        "inputs": inputs,
        "provenance": provenance,
        "storage_options": storage_options,
    }
    (report,) = write_outputs(
        [(array, path, options)], overwrite=overwrite, resume=resume, compute_kwargs=compute_kwargs
    )
    return report


def write_outputs(
    jobs: Sequence[tuple[Any, str | os.PathLike[str], dict[str, Any]]],
    *,
    overwrite: bool = False,
    resume: bool = False,
    compute_kwargs: dict[str, Any] | None = None,
    wave_bytes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[WriteReport]:
    """Compute several results into their outputs, zarr ones together, in waves.

    Parameters
    ----------
    jobs : sequence of (array, path, options)
        Each result, where it goes, and the other keyword arguments of
        `write_output` for it (format, dtype, chunks, compression, axes,
        inputs, provenance...).
    overwrite, resume : bool, default False
        As for `write_output`, for every output.
    compute_kwargs : dict, optional
        Passed to every ``dask.compute``, e.g. ``{"scheduler": "threads"}``.
    wave_bytes : int, optional
        Output bytes computed per wave of neighbouring blocks (default
        `WAVE_BYTES`); smaller waves hold less memory and, on schedulers outside this
        process, read more halos again.
    progress : callable, optional
        Called as ``progress(done, total, found)`` as compute starts and
        whenever blocks are done: `total` blocks are to be stored by this
        call, all outputs together, and `done` of them are stored; `found` of
        those `done` were found stored (on a resume) rather than written by
        this call, so a rate of ``(done - found)`` over the time since the
        first call is this call's.

    Returns
    -------
    list of WriteReport
        One per job, in order.

    Raises
    ------
    OutputLockedError
        Another live run holds the lease of one of the outputs (see
        `write_output`); nothing was touched.
    OutputExistsError, OutputPathError, ResumeError, ArgumentError
        From `check_output`, for any output, before anything is created or
        computed.
    OutputError
        An output could not be written.

    Examples
    --------
    >>> import os, tempfile, numpy as np, dask.array as da
    >>> folder = tempfile.mkdtemp()
    >>> x = da.arange(6.0, chunks=3)
    >>> jobs = [(x, os.path.join(folder, "a.zarr"), {}), (2 * x, os.path.join(folder, "b.zarr"), {})]
    >>> [r.status for r in write_outputs(jobs)]
    ['written', 'written']
    """
    compute_kwargs = compute_kwargs or {}
    arrays = [_blocks_of(a) for a, _, _ in jobs]

    def check_all() -> list[OutputPlan]:
        return [
            check_output(path, array, overwrite=overwrite, resume=resume, **options)
            for array, (_, path, options) in zip(arrays, jobs, strict=True)
        ]

    plans = check_all()
    # One writer per output: the leases come before anything is removed or created, and what is
    # there is checked again under them (a run that held one may have finished it meanwhile).
    lease = _lease.take(
        {plan.path: options.get("provenance") for plan, (_, _, options) in zip(plans, jobs, strict=True)},
        {plan.path: plan.storage_options for plan in plans},
    )
    reports: list[WriteReport | None] = [None] * len(jobs)
    stores: list[_Store] = []
    finishers: list[tuple[int, Callable[[], WriteReport]]] = []
    writing: list[str] = []  # the outputs an OSError may have come from, for its message
    try:
        plans = check_all()
        for index, (array, plan) in enumerate(zip(arrays, plans, strict=True)):
            writing = [plan.path]
            for path in (plan.path, plan.staging):
                if path:
                    _remove_leftover(path)
            if plan.state == "complete":
                if plan.staging and os.path.lexists(plan.staging):
                    _remove(plan.staging)  # left by a run stopped between finishing the TIFF and this
                _remove_scratch(plan.path)  # as its scratch folder and its record of waves, which go
                remove_record(plan.path, plan.storage_options)  # after the output is marked complete
                total = math.prod(array.numblocks)
                reports[index] = WriteReport(plan.path, plan.format, "complete", 0, total, plan.stored or {})
            else:
                prepare = _prepare_tiff if plan.format in TIFF_FORMATS else _prepare_zarr
                store, finish = prepare(array, plan, compute_kwargs)
                stores.append(store)
                finishers.append((index, finish))
        writing = [plans[index].path for index, _ in finishers]
        # One graph per wave for all outputs: a stage that two outputs share is one set of tasks.
        sources, every = [s.source for s in stores], concurrency(compute_kwargs)
        layout = tokenize(
            [(s.path, s.source.chunks, s.source.dtype.str) for s in stores],
            wave_tiles(sources, wave_bytes, every),
        )
        # Waves that every output's record says are finished are skipped without asking the disk.
        known = min(
            (read_done(s.path, layout, s.options) if s.todo is not None else 0 for s in stores), default=0
        )
        tally = _Tally(sum(math.prod(s.source.numblocks) for s in stores), progress, stores, layout, known)
        tiles = tile_waves(sources, None, wave_bytes, every)
        compute_graphs(_graphs(stores, tiles, tally), compute_kwargs, tally.finished)
        for index, finish in finishers:
            writing = [plans[index].path]
            lease.check(plans[index].path)
            reports[index] = finish()
    except ConvflowError:
        raise
    except _stores.store_errors() as err:
        shown = _stores.redact_text(", ".join(writing))
        raise OutputError(
            f"{shown}: writing failed: {_stores.redact_text(str(err))}; check the disk space and permissions "
            "there (for a URL: the store, its credentials and endpoint), then rerun with --resume "
            "(resume=True)"
        ) from err
    finally:
        lease.release()
    return reports  # type: ignore[return-value]


def tidy_outputs(jobs: Sequence[tuple[Any, str | os.PathLike[str], dict[str, Any]]]) -> None:
    """Remove what a run killed after finishing these complete outputs left beside them, if anything.

    That is a lease, a record of waves, a scratch folder, a TIFF's staging
    array, or a folder half created or removed: then `write_outputs`
    (``resume=True``) takes the outputs' leases, removes it, and computes
    nothing.  When nothing was left, nothing is taken or touched (a few
    ``lstat`` calls), so a run that only looks, such as a preview, is not kept
    off the outputs.

    Parameters
    ----------
    jobs : sequence of (array, path, options)
        As for `write_outputs`.
    """
    if any(_left_beside(os.fspath(path)) for _, path, _ in jobs):
        write_outputs(jobs, resume=True)


def _left_beside(path: str) -> bool:
    """Whether anything a run leaves while it writes output `path` is there (`tidy_outputs`)."""
    if _stores.is_remote(path):
        return False
    staging = _tiff.staging_path(path)
    kept = [_lease.lease_path(path), record_path(path), scratch_path(path), staging]
    kept += [name.rstrip("/\\") + suffix for name in (path, staging) for suffix in (_REMOVING, _CREATING)]
    return any(os.path.lexists(name) for name in kept)


@dataclass
class _Store:
    """One output's part of every wave: its result, its block writes, which blocks are to do, and a tally."""

    source: BlockArray
    writes: BlockArray
    todo: Callable[[tuple[int, ...]], bool] | None  # None: every block (not a resume)
    path: str  # the output, beside which the record of finished waves is kept (`_record`)
    by_zarr: bool  # zarr writes the chunks, leaving its temporaries beside them (not in the scratch)
    written: int = 0
    options: dict[str, Any] | None = None  # the store's options, for an output at a URL


def _blocks_of(array: Any) -> BlockArray:
    """`array` as a BlockArray (a dask array's blocks, or an array-like's as one dask array would tile it)."""
    if isinstance(array, BlockArray):
        return array
    return from_dask(array if isinstance(array, da.Array) else da.asarray(array))


class _Tally:
    """Blocks done (stored now or found stored) out of all, and the waves finished in order.

    `progress` hears of the blocks as waves finish; the outputs' records of
    finished waves (`_record`) move on whenever the waves before are all done.
    """

    def __init__(
        self,
        total: int,
        progress: Callable[[int, int], None] | None,
        stores: Sequence[_Store],
        layout: str,
        known: int,
    ) -> None:
        self.total, self.done, self.found, self.progress = total, 0, 0, progress
        self.stores, self.layout, self.known = stores, layout, known
        self.waves: list[tuple[int, int]] = []  # (tile number, blocks) of each wave handed to the scheduler
        self.finished_tiles: set[int] = set()
        self.in_order = known  # tiles before this one are all finished
        self.started, self.computed = time.monotonic(), 0  # blocks computed by this run, since when

    def add(self, blocks: int, found: bool = False) -> None:
        """Count `blocks` more as done: `found` stored already, or written by this run."""
        self.done += blocks
        self.found += blocks if found else 0
        if self.progress is not None:
            self.progress(self.done, self.total, self.found)

    def finish_tile(self, number: int) -> None:
        self.finished_tiles.add(number)
        moved = False
        while self.in_order in self.finished_tiles:
            self.finished_tiles.discard(self.in_order)
            self.in_order += 1
            moved = True
        if moved:
            seconds = time.monotonic() - self.started
            for store in self.stores:
                write_done(store.path, self.layout, self.in_order, self.computed, seconds, store.options)

    def finished(self, number: int) -> None:
        tile, blocks = self.waves[number]
        self.computed += blocks
        self.add(blocks)
        self.finish_tile(tile)


def _graphs(
    stores: Sequence[_Store], tiles: Iterable[list[tuple[int, list[tuple[int, ...]]]]], tally: _Tally
) -> Iterator[Graph]:
    """Each wave's graph: its block writes still to do, gathered under one key (one result to wait for)."""
    for number, tile in enumerate(tiles):
        if number < tally.known:  # recorded as finished: not even the disk is asked
            tally.add(sum(len(blocks) for _, blocks in tile), found=True)
            continue
        wave, skipped = [], 0
        for index, blocks in tile:
            todo = stores[index].todo
            kept = blocks if todo is None else [b for b in blocks if todo(b)]
            skipped += len(blocks) - len(kept)
            if kept:
                wave.append((index, kept))
                stores[index].written += len(kept)
        if skipped or not tally.waves:  # the first wave's call starts the clock of the run's rate
            tally.add(skipped, found=True)
        if not wave:
            tally.finish_tile(number)
            continue
        graph, keys = block_graph([(stores[index].writes, blocks) for index, blocks in wave])
        tally.waves.append((number, len(keys)))
        done = ("wave-done", tokenize([stores[i].writes.name for i, _ in wave], tally.layout), number)
        graph[done] = Task(done, len, List(*(TaskRef(key) for key in keys)))
        yield graph, [done]


def _prepare_zarr(
    array: BlockArray, plan: OutputPlan, compute_kwargs: dict[str, Any]
) -> tuple[_Store, Callable[[], WriteReport]]:
    """Create (or reopen) a zarr output; return its part of the waves, and what finishes it."""
    layout: Layout = plan.layout  # type: ignore[assignment]
    resumed = plan.state == "resume"
    options = plan.storage_options
    if plan.state == "replace":
        _remove(plan.path, options)
    record = plan.stored if resumed else plan.record
    is_ome = layout.format.startswith("ome-")
    if not resumed:
        _create_whole(plan.path, functools.partial(_open_or_create, plan, record))  # type: ignore[arg-type]
    owner = zarr.open(store=_stores.zarr_store(plan.path, options), mode="r+")
    level0_path = _child(plan.path, "0") if is_ome else plan.path
    store = _block_writes(array, level0_path, layout.chunks, resumed, plan.path, options)
    if not resumed:
        remove_record(plan.path, options)  # left by a run onto an output that has since been replaced
        _remove_scratch(plan.path)

    def finish() -> WriteReport:
        if is_ome:
            _write_pyramid(plan.path, owner, layout, compute_kwargs, options)  # type: ignore[arg-type]
        # Only zarr's own writes to a disk leave temporaries among the chunks (an object is put whole
        # or not at all): listed here.
        if store.by_zarr and not _stores.is_remote(plan.path):
            _zarr.remove_partial_files(plan.path)
        _remove_scratch(plan.path)  # what killed writers left, and nothing else: never every chunk
        final = finished_record(record, resumed)  # type: ignore[arg-type]
        owner.update_attributes({"convflow": final})
        remove_record(plan.path, options)
        status = "resumed" if resumed else "written"
        total = math.prod(store.source.numblocks)
        return WriteReport(plan.path, layout.format, status, store.written, total, final)

    return store, finish


def _prepare_tiff(
    array: BlockArray, plan: OutputPlan, compute_kwargs: dict[str, Any]
) -> tuple[_Store, Callable[[], WriteReport]]:
    """`_prepare_zarr` for a TIFF: the blocks go to its staging array; finish writes the TIFF from there.

    The staging array is chunked like the result's blocks and holds the TIFF's
    record, marked incomplete (a resume compares it).  Finishing writes the
    TIFF with that record, then the finished record, and only then removes the
    staging array: whenever a run stops, the staging array or a finished TIFF
    is there.
    """
    layout: Layout = plan.layout  # type: ignore[assignment]
    staging: str = plan.staging  # type: ignore[assignment]
    resumed = plan.state == "resume"
    record: dict[str, Any] = plan.stored if resumed else plan.record  # type: ignore[assignment]
    if plan.state == "replace":
        for path in (plan.path, staging):
            if os.path.lexists(path):
                _remove(path)
    staged = resumed and os.path.lexists(staging)  # else an older convflow's incomplete TIFF: all again
    chunks = tuple(max(b, 1) for b in layout.blocks)
    if not staged:
        create = functools.partial(
            _zarr.create_array,
            name=None,
            shape=layout.shape,
            dtype=np.dtype(layout.dtype),
            chunks=chunks,
            codec=_STAGING_CODEC,
            zarr_format=3,
            axes=layout.axes,
            attributes={"convflow": record},
        )
        _create_whole(staging, create)
    store = _block_writes(array, staging, chunks, staged, plan.path)
    if not staged:
        remove_record(plan.path)
        remove_scratch(plan.path)

    def finish() -> WriteReport:
        if os.path.lexists(plan.path):
            _remove(plan.path)  # an assembly cut short, or an older convflow's incomplete TIFF
        staged = zarr.open_array(staging, mode="r")
        _tiff.write_tiff(
            read_array(staged, staged.chunks),
            plan.path,
            axes=layout.axes,
            tile=layout.chunks[-2:],  # type: ignore[arg-type]
            compression=_tiff.parse_tiff_codec(*layout.compression),
            bigtiff=layout.format == "bigtiff",
            record=record,
            compute_kwargs=compute_kwargs,
            scale=layout.scale,
            units=layout.units,
        )
        final = finished_record(record, resumed)
        _tiff.update_tiff_record(plan.path, final)
        _remove(staging)
        remove_scratch(plan.path)
        remove_record(plan.path)
        total = math.prod(store.source.numblocks)
        return WriteReport(
            plan.path, layout.format, "resumed" if resumed else "written", store.written, total, final
        )

    return store, finish


def _block_writes(
    array: BlockArray,
    path: str,
    chunks: tuple[int, ...],
    resumed: bool,
    output: str | None = None,
    options: dict[str, Any] | None = None,
) -> _Store:
    """`array` aligned to the zarr array at `path`, its block writes, and which blocks are still to write.

    Every block holds whole storage units of the array: its shards where it
    has them (`chunks` are then the inner chunks), else its chunks; so no two
    tasks ever write one file.  On a resume, whether a block is stored is
    asked of the disk as its wave comes, never for all blocks before the
    first (and not at all for the waves the record beside `output`, default
    `path`, says are finished): a chunk file exists only once completely
    written (it is renamed into place from the scratch folder beside
    `output`; a shard, by zarr, from a temporary file beside it), and an
    object only once completely put, so one that exists is trusted.  A
    block's writes go through zarr for an output at a URL, which puts all the
    chunks of the block concurrently (zarr's ``async.concurrency``).
    """
    output = path if output is None else output
    target = _zarr.open_for_writing(path, options)
    storage = tuple(target.shards or chunks)
    source = _aligned(array, storage)
    files = ChunkFiles.of(target, scratch_path(output))
    name = f"store-{tokenize(source.name, target.store_path.path, str(target.store))}"
    writes = Map(
        functools.partial(_store_block, target=target, files=files),
        [source],
        np.bool_,
        name=name,
        chunks=tuple((1,) * n for n in source.numblocks),
        arguments=_block_start,
    )
    todo: Callable[[tuple[int, ...]], bool] | None = None
    if resumed:
        todo = _Missing(source, storage, path, target)
    return _Store(source, writes, todo, output, files is None, options=options)


def _block_start(writes: BlockArray, index: tuple[int, ...]) -> dict[str, Any]:
    """Where block `index` of a store's result begins (`_store_block`'s `start`)."""
    source: BlockArray = writes.sources[0]  # type: ignore[attr-defined]
    return {"start": tuple(start for start, _ in source.location(index))}


class _Missing:
    """Whether a block of a resumed output still has a storage chunk to write (`_block_writes`).

    Each block's chunks (or shards) are asked about one by one as its wave
    comes: a file each on a disk (it exists only once renamed into place
    whole, by convflow or by zarr), the objects all at once at a URL. Nothing
    lists the output, so a resume costs the same per block at any size.
    """

    def __init__(self, source: BlockArray, storage: tuple[int, ...], path: str, target: zarr.Array) -> None:
        self.source, self.storage, self.path, self.target = source, storage, path, target

    def __call__(self, block: tuple[int, ...]) -> bool:
        ranges = [
            range(start // size, -(-stop // size))
            for (start, stop), size in zip(self.source.location(block), self.storage, strict=True)
        ]
        coords = list(itertools.product(*ranges))
        if _stores.is_remote(self.path):
            return not all(_stored_objects(self.target, coords))
        return not all(os.path.exists(self._file(c)) for c in coords)

    def _file(self, coords: tuple[int, ...]) -> str:
        """The file of the storage unit (a chunk or a shard) at `coords` of a local array."""
        key = self.target.metadata.encode_chunk_key(coords)
        return os.path.join(str(self.target.store.root), self.target.path, *key.split("/"))


def _stored_objects(target: zarr.Array, coords: list[tuple[int, ...]]) -> list[bool]:
    """Whether each chunk `coords` of the zarr array `target` (at a URL) is stored, asked concurrently."""
    from zarr.core.sync import sync

    store, prefix = target.store, target.path

    async def ask() -> list[bool]:
        keys = [target.metadata.encode_chunk_key(c) for c in coords]
        return list(await asyncio.gather(*(store.exists(f"{prefix}/{k}" if prefix else k) for k in keys)))

    return sync(ask())  # type: ignore[no-any-return]


def _child(path: str, name: str) -> str:
    """The array `name` inside the group at `path` (a local path or a URL)."""
    return _stores.join(path, name) if _stores.is_remote(path) else os.path.join(path, name)


def _create_whole(path: str, create: Callable[[str], Any]) -> None:
    """Create a zarr array or group at `path` whole: `create` makes it at ``PATH.convflow-creating``, renamed.

    A run stopped meanwhile (a full disk, a kill) leaves nothing at `path`
    that is neither absent nor convflow's whole output, only that leftover,
    which the next run onto the output removes (`_remove_leftover`).
    """
    if _stores.is_remote(path):  # objects: no folder to leave half made, and no rename
        create(path)
        return
    draft = path.rstrip("/\\") + _CREATING
    _remove_leftover(path)
    try:
        create(draft)
    except BaseException:
        if os.path.isdir(draft) and not os.path.islink(draft):
            shutil.rmtree(draft, ignore_errors=True)
        raise
    os.rename(draft, path)


def _open_or_create(plan: OutputPlan, record: dict[str, Any], where: str) -> zarr.Array | zarr.Group:
    """Create the output (array, or OME group with one array per level) at `where`, marked incomplete."""
    layout: Layout = plan.layout  # type: ignore[assignment]
    common = {"dtype": np.dtype(layout.dtype), "codec": layout.compression, "axes": layout.axes}
    if not layout.format.startswith("ome-"):
        zarr_format = 2 if layout.format == "zarr-v2" else 3
        return _zarr.create_array(
            _stores.zarr_store(where, plan.storage_options),
            None,
            shape=layout.shape,
            chunks=layout.chunks,
            zarr_format=zarr_format,
            attributes={"convflow": record},
            shards=layout.shards,
            **common,
        )
    version = _ome.NGFF_VERSIONS[layout.format]
    levels = _ome.level_shapes(layout.shape, layout.axes, layout.pyramid_levels)
    attributes = _ome.multiscales_attrs(
        axes=layout.axes,
        units=layout.units,
        scale=layout.scale,
        translation=layout.translation,
        factors=[factor for _, factor in levels],
        version=version,
        name=os.path.basename(plan.path.rstrip("/")),
        method=layout.pyramid_method,
    )
    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(
        _stores.zarr_store(where, plan.storage_options),
        mode="w-",
        zarr_format=zarr_format,
        attributes={**attributes, "convflow": record},
    )
    for index, (shape, _) in enumerate(levels):
        chunks = tuple(min(c, max(n, 1)) for c, n in zip(layout.chunks, shape, strict=True))
        shards = None if layout.shards is None else level_shards(layout.shards, chunks, shape)
        _zarr.create_array(
            group, str(index), shape=shape, chunks=chunks, zarr_format=zarr_format, shards=shards, **common
        )
    return group


def level_shards(shards: tuple[int, ...], chunks: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shards of a pyramid level: the output's, cut to the whole chunks that cover the level.

    Examples
    --------
    >>> level_shards((8, 32), (4, 16), (3, 20))  # a level smaller than a shard: one shard
    (4, 32)
    """
    return tuple(min(s, -(-max(n, 1) // c) * c) for s, c, n in zip(shards, chunks, shape, strict=True))


def written_blocks(array: Any, layout: Layout) -> BlockArray:
    """`array` in the blocks that writing it as `layout` computes: whole shards, chunks or staging chunks.

    `write_outputs` computes and stores these blocks; a plan that counts
    their waves and tasks counts what the run will do.

    Examples
    --------
    >>> import os, tempfile
    >>> x = da.zeros((8, 8), chunks=2)
    >>> plan = check_output(os.path.join(tempfile.mkdtemp(), "o.zarr"), x, chunks=2, shards=(4, 8))
    >>> written_blocks(x, plan.layout).chunks
    ((4, 4), (8,))
    """
    if layout.format in TIFF_FORMATS:
        return _aligned(_blocks_of(array), tuple(max(b, 1) for b in layout.blocks))
    return _aligned(_blocks_of(array), layout.shards or layout.chunks)


def _aligned(array: BlockArray, chunks: tuple[int, ...]) -> BlockArray:
    """Return `array` with every block made of whole storage chunks (regridded only when needed)."""
    fits = all(all(c % s == 0 for c in axis[:-1]) for axis, s in zip(array.chunks, chunks, strict=True))
    if fits:
        return array
    return Regrid(array, da.core.normalize_chunks(chunks, array.shape, dtype=array.dtype))


def _store_block(
    block: np.ndarray, target: zarr.Array, files: ChunkFiles | None, start: tuple[int, ...]
) -> np.ndarray:
    """Cast one computed block to the output dtype and store it (whole storage chunks only).

    Where the array's chunks are plain files (`ChunkFiles`) they are written
    directly, with the bytes zarr would write; otherwise zarr writes them.
    """
    region = tuple(slice(s, s + n) for s, n in zip(start, block.shape, strict=True))
    try:
        if files is not None:
            files.write(start, cast(block, target.dtype))
        else:
            target[region] = cast(block, target.dtype)
    except OSError as err:
        raise OutputError(
            f"{target.store}: writing block {region} failed: {err}; check the disk space and permissions, "
            "then rerun with --resume (resume=True)"
        ) from err
    return np.ones((1,) * block.ndim, dtype=bool)


def cast(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Return `block` as `dtype`: exact when it fits, else rounded half to even and clipped.

    Examples
    --------
    >>> cast(np.array([-1, 7, 300]), np.dtype(np.uint8))
    array([  0,   7, 255], dtype=uint8)
    """
    if block.dtype == dtype or np.can_cast(block.dtype, dtype, "safe"):
        return block.astype(dtype, copy=False)
    # cast_result rounds and clips floats; integers go through float64 (exact up to 2**53).
    return cast_result(block if block.dtype.kind == "f" else block.astype(np.float64), dtype)


def _write_pyramid(
    path: str,
    group: zarr.Group,
    layout: Layout,
    compute_kwargs: dict[str, Any],
    options: dict[str, Any] | None = None,
) -> None:
    """Write levels 1.. of an OME-Zarr image, each from the stored level before it, wave by wave."""
    dtype = np.dtype(layout.dtype)
    for index, (_, factors) in enumerate(_ome.level_shapes(layout.shape, layout.axes, layout.pyramid_levels)):
        if index == 0:
            continue
        previous, chunks = group[str(index - 1)], group[str(index)].chunks
        # A sharded level is read a shard per block (each shard decoded once), and written in whole shards.
        stored = _blocks_of(read_array(previous, tuple(previous.shards or previous.chunks)))
        whole = tuple(group[str(index)].shards or chunks)
        level = _ome.downsample(stored, factors, dtype, layout.pyramid_method, whole)
        store = _block_writes(level, _child(path, str(index)), chunks, False, path, options)
        tiles = tile_waves([store.source], None, None, concurrency(compute_kwargs))
        compute_graphs(
            (block_graph([(store.writes, blocks) for _, blocks in tile]) for tile in tiles), compute_kwargs
        )


def _remove_scratch(path: str) -> None:
    """`remove_scratch` for an output on a disk; an output at a URL has no scratch folder."""
    if not _stores.is_remote(path):
        remove_scratch(path)


def _remove(path: str, options: dict[str, Any] | None = None) -> None:
    """Remove an output that check_output allowed to be replaced (a link is removed, not followed).

    A folder on a disk is renamed to ``PATH.convflow-removing`` first and
    removed there: a run killed meanwhile leaves no half-removed output under
    its name, which no check could tell from a foreign folder, only that
    leftover, which the next run onto the output removes (`_remove_leftover`).
    """
    if _stores.is_remote(path):
        _stores.remove(path, options, recursive=True)
    elif os.path.isdir(path) and not os.path.islink(path):
        _remove_leftover(path)
        doomed = path.rstrip("/\\") + _REMOVING
        os.rename(path, doomed)
        shutil.rmtree(doomed)
    else:
        os.remove(path)


def _remove_leftover(path: str) -> None:
    """Remove what a run killed removing or creating the folder `path` left (`_remove`, `_create_whole`)."""
    for suffix in (_REMOVING, _CREATING):
        doomed = path.rstrip("/\\") + suffix
        if os.path.isdir(doomed) and not os.path.islink(doomed):
            shutil.rmtree(doomed)
