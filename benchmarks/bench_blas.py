"""What one BLAS thread per block product costs (issue #15): the engine's passes with and without it.

convflow runs a block's banded matrix products inside
`convflow.engine._blas.one_blas_thread`, so their sums (and the bytes
written) do not depend on the BLAS's threading.  This times the block
filters that use those products, each on one W1-sized block (128³ float32
plus its halo), alternately with the limit and with it replaced by a no-op,
in one process on one dask-free thread, and prints medians of CPU and wall
time.  A second run under ``OPENBLAS_NUM_THREADS=1`` shows a BLAS that is
single-threaded from the start.

    python benchmarks/bench_blas.py
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_blas.py
    python benchmarks/bench_blas.py --repeats 5 --block 64    # quick
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import time

import numpy as np

import convflow
import convflow.engine._methods as methods
from convflow import kernels

FILTERS = {
    "gaussian sigma 2 (W1)": lambda: kernels.get("gaussian", sigma=2, ndim=3),
    "9x9x9 box (W4's factors)": lambda: np.ones((9, 9, 9), dtype=np.float32) / 729,
    "unsharp sigma 2 (W8)": lambda: kernels.get("unsharp", sigma=2, ndim=3),
    "LoG sigma 2 (W9)": lambda: kernels.get("log", sigma=2, ndim=3),
}


def timed(run, repeats: int) -> tuple[float, float]:
    """Median CPU and wall seconds of `repeats` calls."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--block", type=int, default=128, help="block edge before the halo (default 128)")
    args = parser.parse_args()
    limited = methods.one_blas_thread
    print(
        f"block {args.block}³ + halo, float32, {args.repeats} calls each, OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        "| filter | CPU ms: one BLAS thread | CPU ms: BLAS free | wall ms: one | wall ms: free | CPU ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for name, make in FILTERS.items():
        kernel = make()
        size = args.block + 2 * (max(kernel.shape) // 2)  # a Kernel and an array both have a shape
        block = rng.random((size,) * 3, dtype=np.float32)
        run = functools.partial(convflow.convolve, block, kernel, mode="reflect")
        run()  # compile and warm up
        results = {"one": [], "free": []}
        for _ in range(3):  # interleaved, so drifting load lands on both
            for key, limit in (("one", limited), ("free", contextlib.nullcontext)):
                methods.one_blas_thread = limit
                results[key].append(timed(run, args.repeats))
        methods.one_blas_thread = limited
        one = [statistics.median(r[i] for r in results["one"]) * 1e3 for i in (0, 1)]
        free = [statistics.median(r[i] for r in results["free"]) * 1e3 for i in (0, 1)]
        cells = [f"{v:.1f}" for v in (one[0], free[0], one[1], free[1])]
        print(f"| {name} | {' | '.join(cells)} | {one[0] / free[0]:.2f} |")


if __name__ == "__main__":
    main()
