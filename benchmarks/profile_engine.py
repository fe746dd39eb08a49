"""Profile where a chunked contender spends its time on one benchmark workload.

Runs the workload zarr to zarr under dask's Profiler (threaded scheduler, all
cores, low-level task fusion off so each task keeps its own name) and sums
task time by kind (zarr read, halo slicing, concatenation, rechunk,
filtering, zarr write; dask fuses the filter into the store tasks, so a
wrapper around zarr's ``__setitem__`` splits those apart).  Then it times
each stage alone on one thread, best of a few repeats, which other load on
the machine disturbs less:

- zarr read + decode of every chunk; zarr encode + write of every chunk;
- the halo machinery, in memory: for convflow the same call with a kernel of
  the same shape holding one nonzero weight (the block math is then one
  multiply per voxel); for dask-image its map_overlap around an identity;
- the block math on one padded block, times the number of blocks;

and the whole run, zarr to zarr, on one dask thread, to compare with their sum.

    python benchmarks/profile_engine.py W2
    python benchmarks/profile_engine.py W1 --contender dask-image
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import time
from collections import defaultdict
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from bench_engine import DEFAULT_WORK, chunked_filter, gaussian_kernel, halo, make_input, workload
from dask.diagnostics import Profiler

KINDS = (
    ("from-zarr", "zarr read + decode"),
    ("original-array", "zarr read + decode"),
    ("store-map", "zarr encode + write"),
    ("getitem", "slices (halo pieces, take, rechunk splits)"),
    ("take", "slices (halo pieces, take, rechunk splits)"),
    ("concatenate", "concatenate (extend along each axis)"),
    ("overlap", "overlap (concatenate the padded blocks)"),
    ("rechunk", "rechunk"),
    ("astype", "astype"),
    ("_fused_block", "filter (block math + cast)"),
    ("_trim", "trim (dask-image)"),
)


def kind(key: Any) -> str:
    """The kind of a task, from its key's name."""
    name = str(key[0] if isinstance(key, tuple) else key)
    for prefix, label in KINDS:
        if name.startswith(prefix):
            return label
    return name.rsplit("-", 1)[0] if "-" in name else name


def timing_setitem() -> list[float]:
    """Wrap zarr.Array.__setitem__ to record each call's seconds (the encode + write inside store tasks)."""
    seconds: list[float] = []
    original = zarr.Array.__setitem__

    def timed(self: Any, selection: Any, value: Any) -> None:
        start = time.perf_counter()
        original(self, selection, value)
        seconds.append(time.perf_counter() - start)

    zarr.Array.__setitem__ = timed  # type: ignore[method-assign]
    return seconds


def profile(w: Any, contender: str, work: Any, threads: int) -> None:
    """Print task time by kind for one zarr-to-zarr run, and the run's wall time."""
    writes = timing_setitem()
    source = work / w.input_name
    out = work / f"profile_{w.name}_{contender}.zarr"
    shutil.rmtree(out, ignore_errors=True)
    filt = chunked_filter(w.name, contender)
    with dask.config.set({"optimization.fuse.active": False}, scheduler="threads", num_workers=threads):
        start = time.perf_counter()
        image = da.from_zarr(zarr.open_array(str(source), mode="r"))
        result = filt(image)
        target = zarr.create_array(str(out), shape=w.shape, chunks=w.chunks, dtype=result.dtype)
        stored = da.store(result, target, lock=False, compute=False)
        graph_seconds = time.perf_counter() - start
        with Profiler() as prof:
            stored.compute()
        wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for task in prof.results:
        totals[kind(task.key)] += task.end_time - task.start_time
        counts[kind(task.key)] += 1
    busy = sum(totals.values())
    print(
        f"{w.name} {contender}: wall {wall:.2f} s (graph {graph_seconds:.2f} s), {len(prof.results)} tasks, "
        f"task time {busy:.2f} s over {threads} threads"
    )
    # dask fuses the filter into the store tasks (blockwise fusion); split them apart.
    store = "zarr encode + write"
    write = sum(writes)
    if store in totals:
        totals["filter (block math, cast; fused into store)"] = totals[store] - write
        totals[store] = write
    for label, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {label:<48} {seconds:7.2f} s  {seconds / busy:4.0%}  ({counts.get(label, '-')} tasks)")


def best_of(repeats: int, func: Any) -> float:
    """Best wall time of `repeats` calls: the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def costs(w: Any, contender: str, work: Any, repeats: int) -> None:
    """Single-thread cost of each stage alone (best of `repeats`), against the whole run on one thread."""
    source = zarr.open_array(str(work / w.input_name), mode="r")
    grid = [range(0, n, c) for n, c in zip(w.shape, w.chunks, strict=True)]
    regions = [
        tuple(slice(s, min(s + c, n)) for s, c, n in zip(corner, w.chunks, w.shape, strict=True))
        for corner in itertools.product(*grid)
    ]
    data = source[...]
    out = work / f"profile_costs_{w.name}.zarr"

    def read() -> None:
        for region in regions:
            source[region]

    def write() -> None:
        target = zarr.create_array(str(out), shape=w.shape, chunks=w.chunks, dtype="float32", overwrite=True)
        for region in regions:
            target[region] = data[region].astype(np.float32, copy=False)

    # The halo machinery alone: the same filter path with a kernel of the same
    # shape holding one nonzero weight, so the block math is one multiply.
    shape = _kernel(w.name).shape
    delta = np.zeros(shape)
    delta[tuple(n // 2 for n in shape)] = 1.0
    if contender == "convflow":
        import convflow

        def halo_only() -> None:
            result = convflow.convolve(da.from_array(data, chunks=w.chunks, name=False), delta)
            da.store(result, np.empty(result.shape, result.dtype), lock=False)
    else:
        # dask-image's own structure (map_overlap, boundary "none", trim) around
        # an identity: its scipy call would walk the whole footprint even for
        # one nonzero weight.
        def halo_only() -> None:
            image = da.from_array(data, chunks=w.chunks, name=False)
            result = image.map_overlap(lambda b: b, depth=halo(w.name), boundary="none", dtype=image.dtype)
            da.store(result, np.empty(result.shape, result.dtype), lock=False)

    block_seconds, what = block_cost(w, contender, repeats)
    blocks = len(regions)

    def whole() -> None:
        filt = chunked_filter(w.name, contender)
        result = filt(da.from_zarr(source))
        da.to_zarr(
            result,
            zarr.create_array(str(out), shape=w.shape, chunks=w.chunks, dtype=result.dtype, overwrite=True),
        )

    with dask.config.set(scheduler="threads", num_workers=1):
        parts = {
            "zarr read + decode, every chunk": best_of(repeats, read),
            "zarr encode + write, every chunk": best_of(repeats, write),
            "halo machinery (in memory)": best_of(repeats, halo_only),
            f"block math: {what}, x {blocks}": block_seconds * blocks,
        }
        total = best_of(repeats, whole)
    shutil.rmtree(out, ignore_errors=True)
    print(f"  single-thread costs, best of {repeats}:")
    for label, seconds in parts.items():
        print(f"    {label:<58} {seconds:6.2f} s")
    print(f"    {'sum':<58} {sum(parts.values()):6.2f} s")
    print(f"    {'the whole run, zarr to zarr, one dask thread':<58} {total:6.2f} s")


def block_cost(w: Any, contender: str, repeats: int) -> tuple[float, str]:
    """Seconds of the block math on one padded block, as the contender does it, and what it is."""
    from bench_engine import scipy_filter

    from convflow.engine import _filter, _methods

    pad = halo(w.name)
    shape = tuple(c + 2 * pad for c in w.chunks)
    block = np.random.default_rng(0).random(shape, dtype=np.float32)
    if contender == "dask-image":
        filt = scipy_filter(w.name)
        return best_of(repeats, lambda: filt(block)), f"scipy on {shape}"
    kernel = gaussian_kernel() if w.name == "W1" else _kernel(w.name)
    f = _filter.make_filter(
        np.float32,
        3,
        kernel,
        flip=True,
        mode="reflect",
        cval=0.0,
        origin=0,
        axes=None,
        method="auto",
        dtype=None,
    )
    method, _ = _methods.choose_method("auto", f.weights, f.terms, shape, f.axes)
    seconds = best_of(
        repeats, lambda: _methods.correlate_block(block, f.weights, f.terms, f.axes, method, f.compute_dtype)
    )
    return seconds, f"{method} on {shape}"


def _kernel(name: str) -> Any:
    """The kernel of a 3-D workload, as the benchmark gives it to convflow."""
    from bench_engine import box_kernel, dense_kernel, gaussian_kernel

    if name == "W1":
        return gaussian_kernel()
    return {"W2": dense_kernel(3), "W3": dense_kernel(9), "W4": box_kernel()}[name]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, make the input if needed, profile, clean up."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=["W1", "W2", "W3", "W4"])
    parser.add_argument("--contender", choices=("convflow", "dask-image"), default="convflow")
    parser.add_argument("--scale", type=float, default=1.0, help="factor on every axis (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="dask threads (default all)")
    parser.add_argument("--repeats", type=int, default=3, help="single-thread timings; the best counts")
    parser.add_argument("--keep", action="store_true", help="keep the generated input in benchmarks/work/")
    args = parser.parse_args(argv)
    w = workload(args.workload, args.scale)
    DEFAULT_WORK.mkdir(parents=True, exist_ok=True)
    source = DEFAULT_WORK / w.input_name
    existed = source.exists()
    make_input(w, source)
    try:
        profile(w, args.contender, DEFAULT_WORK, args.threads)
        costs(w, args.contender, DEFAULT_WORK, args.repeats)
    finally:
        if not (args.keep or existed):
            shutil.rmtree(source, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
