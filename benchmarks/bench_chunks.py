"""Chunk I/O from dask-like worker threads: through zarr-python, and as files (convflow.io._chunks).

Reads every chunk of W1's input (512^3 float32, 128^3 chunks, zstd) and
writes them to a fresh zarr v3 array with the same codecs, from a pool of
worker threads (default: all cores), once through zarr's ``array[region]``
and once through `ChunkFiles`; prints milliseconds per chunk, median of the
rounds, for each.  The written files are compared byte for byte at the end.

    python benchmarks/bench_chunks.py               # 5 rounds, all cores
    python benchmarks/bench_chunks.py --threads 1
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from bench_engine import DEFAULT_WORK, make_input, workload

from convflow.io._chunks import ChunkFiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    w = workload("W1")
    source_path = args.output_dir / w.input_name
    make_input(w, source_path)
    source = zarr.open_array(str(source_path), mode="r")
    grid = list(itertools.product(*(range(-(-n // c)) for n, c in zip(w.shape, w.chunks, strict=True))))
    blocks = {coords: source[region(coords, w.chunks)] for coords in grid}
    outputs = {name: args.output_dir / f"chunks_{name}.zarr" for name in ("zarr", "files")}

    def fresh(name: str) -> zarr.Array:
        shutil.rmtree(outputs[name], ignore_errors=True)
        return zarr.create_array(str(outputs[name]), shape=w.shape, chunks=w.chunks, dtype=w.dtype)

    def timed(job, items) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(job, items))
        return (time.perf_counter() - start) * 1e3 / len(grid)

    files = ChunkFiles.of(source)
    times: dict[str, list[float]] = {
        key: [] for key in ("read zarr", "read files", "write zarr", "write files")
    }
    for _ in range(args.rounds):
        times["read zarr"].append(timed(lambda c: source[region(c, w.chunks)], grid))
        times["read files"].append(timed(files.read, grid))
        target = fresh("zarr")
        times["write zarr"].append(timed(functools.partial(zarr_write, target, blocks), grid))
        written = ChunkFiles.of(fresh("files"))
        times["write files"].append(timed(functools.partial(files_write, written, blocks), grid))
    print(f"{len(grid)} chunks of {w.chunks} {w.dtype}, {args.threads} threads, {args.rounds} rounds")
    for key, values in times.items():
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {key:12s} {statistics.median(values):6.1f} ms/chunk (rounds: {rounds})")
    same = all(
        Path(written.path(c)).read_bytes() == Path(ChunkFiles.of(target).path(c)).read_bytes() for c in grid
    )
    print(f"  written files identical to zarr's: {same}")
    for path in outputs.values():
        shutil.rmtree(path, ignore_errors=True)
    np.testing.assert_equal(same, True)


def zarr_write(target: zarr.Array, blocks: dict, coords: tuple[int, ...]) -> None:
    target[region(coords, target.chunks)] = blocks[coords]


def files_write(files: ChunkFiles, blocks: dict, coords: tuple[int, ...]) -> None:
    files.write(tuple(i * c for i, c in zip(coords, files.chunks, strict=True)), blocks[coords])


def region(coords: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, chunks, strict=True))


if __name__ == "__main__":
    main()
