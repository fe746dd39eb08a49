"""write_outputs(): several outputs stored by one dask.compute, so the stages they share run once.

`write_output` computes each output on its own; a pipeline that writes a
stage and also something derived from it would filter that stage twice.
Here every zarr output is checked and created first, then all their block
writes go to the scheduler as one graph, in which shared tasks (same keys)
appear once; only then is each output marked complete. TIFF outputs are
written afterwards, one after another: tifffile writes tiles in file
order, band by band, which one shared graph cannot do.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from convflow.errors import ConvflowError, OutputError
from convflow.io import _zarr
from convflow.io._provenance import finished_record
from convflow.io._target import Layout, OutputPlan, check_output
from convflow.io._write import (
    WriteReport,
    _aligned,
    _is_stored,
    _open_or_create,
    _remove,
    _store_block,
    _write_pyramid,
    _write_tiff,
)

_TIFF = ("tiff", "bigtiff")


def write_outputs(
    jobs: Sequence[tuple[Any, str | os.PathLike[str], dict[str, Any]]],
    *,
    overwrite: bool = False,
    resume: bool = False,
    compute_kwargs: dict[str, Any] | None = None,
) -> list[WriteReport]:
    """Compute several results into their outputs, zarr ones in a single compute.

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

    Returns
    -------
    list of WriteReport
        One per job, in order.

    Raises
    ------
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
    arrays = [a if isinstance(a, da.Array) else da.asarray(a) for a, _, _ in jobs]
    plans = [
        check_output(path, array, overwrite=overwrite, resume=resume, **options)
        for array, (_, path, options) in zip(arrays, jobs, strict=True)
    ]
    reports: list[WriteReport | None] = [None] * len(jobs)
    stores: list[tuple[da.Array, list[tuple[int, ...]]]] = []
    finishers: list[tuple[int, Callable[[], WriteReport]]] = []
    try:
        for index, (array, plan) in enumerate(zip(arrays, plans, strict=True)):
            if plan.state == "complete":
                total = int(np.prod(array.numblocks))
                reports[index] = WriteReport(plan.path, plan.format, "complete", 0, total, plan.stored or {})
            elif plan.format not in _TIFF:
                writes, blocks, finish = _prepare_zarr(array, plan, compute_kwargs)
                if blocks:
                    stores.append((writes, blocks))
                finishers.append((index, finish))
        if stores:
            # One compute: the array optimisations then keep a stage that two outputs share as one set
            # of tasks (optimising each output on its own would fuse the stage into both).
            dask.compute(*(_only(writes, blocks) for writes, blocks in stores), **compute_kwargs)
        for index, finish in finishers:
            reports[index] = finish()
        for index, (array, plan) in enumerate(zip(arrays, plans, strict=True)):
            if reports[index] is None:
                if plan.state == "replace":
                    _remove(plan.path)
                reports[index] = _write_tiff(array, plan, compute_kwargs)
    except ConvflowError:
        raise
    except OSError as err:
        raise OutputError(
            f"writing failed: {err}; check the disk space and permissions, then rerun with --resume"
        ) from err
    return reports  # type: ignore[return-value]


def _prepare_zarr(
    array: da.Array, plan: OutputPlan, compute_kwargs: dict[str, Any]
) -> tuple[da.Array, list[tuple[int, ...]], Callable[[], WriteReport]]:
    """Create (or reopen) a zarr output; return its block writes, the blocks missing, and its finish."""
    layout: Layout = plan.layout  # type: ignore[assignment]
    resumed = plan.state == "resume"
    if plan.state == "replace":
        _remove(plan.path)
    record = plan.stored if resumed else plan.record
    is_ome = layout.format.startswith("ome-")
    owner = zarr.open(store=plan.path, mode="r+") if resumed else _open_or_create(plan, record)  # type: ignore[arg-type]
    level0_path = os.path.join(plan.path, "0") if is_ome else plan.path
    target = _zarr.open_for_writing(level0_path)
    source = _aligned(array, layout.chunks)
    blocks = list(np.ndindex(*source.numblocks))
    if resumed:
        stored = _zarr.stored_chunk_keys(level0_path)
        blocks = [b for b in blocks if not _is_stored(b, source.chunks, layout.chunks, target, stored)]

    def finish() -> WriteReport:
        if is_ome:
            _write_pyramid(plan.path, owner, layout, compute_kwargs)  # type: ignore[arg-type]
        final = finished_record(record, resumed)  # type: ignore[arg-type]
        owner.update_attributes({"convflow": final})
        status = "resumed" if resumed else "written"
        total = int(np.prod(source.numblocks))
        return WriteReport(plan.path, layout.format, status, len(blocks), total, final)

    name = f"store-{tokenize(source.name, target.store_path.path, str(target.store))}"
    meta = np.empty((0,) * source.ndim, dtype=bool)
    writes = source.map_blocks(_store_block, target=target, name=name, chunks=(1,) * source.ndim, meta=meta)
    return writes, blocks, finish


def _only(writes: da.Array, blocks: list[tuple[int, ...]]) -> da.Array | Delayed:
    """`writes` itself when every block is missing, else one task that needs exactly `blocks`.

    The task (a resume) culls the rest of the graph, but is not optimised as an array.
    """
    if len(blocks) == writes.npartitions:
        return writes
    done = f"stored-{writes.name}"
    layer = {done: (len, [(writes.name, *b) for b in blocks])}
    return Delayed(done, HighLevelGraph.from_collections(done, layer, dependencies=[writes]))
