"""Benchmark convflow.signal against scipy.signal.convolve2d, image by image (#13).

The seed example of issue #13: the even 10x10 kernel (``ones``, left half
``-1``), ``mode="same"``, ``boundary="symm"``, over 64 float32 images of
2048 x 2048.  Contenders, each repeat of each in a fresh subprocess (so its
peak RSS, VmHWM, is its own), round by round:

- ``scipy``: ``scipy.signal.convolve2d`` on one image at a time.  It takes
  seconds per image, so it runs on ``--scipy-images`` of them and its time
  is scaled to all images (per-image times are steady: each image is the
  same amount of work);
- ``convflow``: ``convflow.signal.convolve2d`` on a dask array of the
  in-memory stack, chunked ``(--chunk-images, --chunk-rows, side)``
  (default: one image per chunk, as image stacks are usually stored),
  stored into a numpy array on dask's threaded scheduler, all cores, in
  waves of 128 MiB of output as convflow's writers store;
- ``convflow-1thread``: the same on the synchronous scheduler, so the ratio
  per core shows too.

Both are timed from the call to the last value written (convflow's dask
array is made untimed: `dask.array.from_array` copies the stack into its
chunks, which counts in convflow's peak RSS), and report wall and CPU
seconds (all threads).  The convflow runs afterwards compare their first
and last images with scipy's and print the largest error against the
spec's float32 bound, 1e-5 * sum|k| * max|x|.  The 10x10 kernel is the outer
product of ``ones(10)`` and ``[-1] * 5 + [1] * 5``: convflow finds the
factors and runs two 10-tap passes, where convolve2d makes 100 products per
value.

    python benchmarks/bench_signal.py                          # 64 x 2048^2, 3 repeats
    python benchmarks/bench_signal.py --images 8 --side 512 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

CONTENDERS = ("scipy", "convflow", "convflow-1thread")
# Output per wave, as convflow.io's writers default to.
WAVE_BYTES = 128 * 2**20


def seed_kernel() -> np.ndarray:
    """The 10x10 kernel of issue #13: ones, with the left half -1."""
    kernel = np.ones((10, 10), dtype=np.float32)
    kernel[:, :5] = -1
    return kernel


def stack(images: int, side: int) -> np.ndarray:
    """The float32 input, the same for every contender (seeded)."""
    return np.random.default_rng(13).random((images, side, side), dtype=np.float32)


def peak_rss() -> int:
    """This process's peak resident set (VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_scipy(args: argparse.Namespace) -> dict[str, Any]:
    """scipy.signal.convolve2d on `scipy_images` images, one at a time."""
    import scipy.signal

    images = stack(args.images, args.side)[: args.scipy_images]
    kernel = seed_kernel()
    out = np.empty_like(images)
    wall, cpu = time.perf_counter(), time.process_time()
    for index, image in enumerate(images):
        out[index] = scipy.signal.convolve2d(image, kernel, mode="same", boundary="symm")
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "images": len(images)}


def run_convflow(args: argparse.Namespace, threads: bool) -> dict[str, Any]:
    """convflow.signal.convolve2d on the whole stack as a dask array, stored into numpy."""
    import dask.array as da
    import scipy.signal

    import convflow.signal

    images = stack(args.images, args.side)
    kernel = seed_kernel()
    out = np.empty_like(images)
    # One small call first: the engine's modules load on first use, as scipy's import is not timed either.
    convflow.signal.convolve2d(da.from_array(images[:1, :64, :64]), kernel, "same", "symm").compute()
    # Untimed, as reading a stored stack is for scipy: dask copies the stack into its chunks here
    # (name=False spares hashing it).
    chunks = (args.chunk_images, args.chunk_rows or args.side, args.side)
    source = da.from_array(images, chunks=chunks, name=False)
    wall, cpu = time.perf_counter(), time.process_time()
    result = convflow.signal.convolve2d(source, kernel, "same", "symm")
    # In waves of about 128 MiB of output, as convflow's writers store (convflow/io/_waves.py): one
    # store of everything lets dask pad every block before filtering any, and hold them all.
    wave = max(1, WAVE_BYTES // (args.side * args.side * 4))
    for start in range(0, len(images), wave):
        part = slice(start, start + wave)
        da.store(result[part], out[part], lock=False, scheduler="threads" if threads else "synchronous")
    timing = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "images": len(images)}
    bound = 1e-5 * float(np.abs(kernel).sum()) * float(np.abs(images).max())
    errors = []
    for index in (0, len(images) - 1):
        want = scipy.signal.convolve2d(images[index].astype(np.float64), kernel, mode="same", boundary="symm")
        errors.append(float(np.abs(out[index] - want).max()))
    return {**timing, "max_err": max(errors), "bound": bound, "dtype": str(out.dtype)}


def child(args: argparse.Namespace) -> None:
    """Run one contender and print its result as one JSON line."""
    if args.child == "scipy":
        result = run_scipy(args)
    else:
        result = run_convflow(args, threads=args.child == "convflow")
    print(json.dumps({**result, "peak_rss": peak_rss()}))


def uptime() -> str:
    """The load averages, as `uptime` shows them."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--scipy-images", type=int, default=4, help="images scipy runs on, scaled to all")
    parser.add_argument("--chunk-images", type=int, default=1, help="images per dask chunk")
    parser.add_argument("--chunk-rows", type=int, default=0, help="rows per dask chunk (0: the whole image)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import dask
    import scipy

    import convflow

    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, dask {dask.__version__}, convflow {convflow.__version__}"
    )
    print(f"# load average at start: {uptime()}")
    print(
        f"# {args.images} x {args.side}^2 float32, the 10x10 seed kernel, same, symm; scipy on "
        f"{min(args.scipy_images, args.images)} images, scaled to {args.images}; convflow chunks "
        f"({args.chunk_images}, {args.chunk_rows or args.side}, {args.side})"
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.contenders}
    passed = [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in ("images", "side", "scipy_images")]
    passed += [f"--chunk-images={args.chunk_images}", f"--chunk-rows={args.chunk_rows}"]
    for _ in range(args.repeats):
        for name in args.contenders:
            done = subprocess.run(
                [sys.executable, __file__, "--child", name, *passed],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            runs[name].append(result)
            print(f"#   {name}: {result}", flush=True)
    print(f"# load average at end: {uptime()}")

    def per_image(name: str, key: str) -> float:
        return statistics.median(r[key] / r["images"] for r in runs[name])

    print()
    print(
        "| contender | median s per image | all images, s | CPU s per image | peak RSS MiB "
        "| vs scipy: wall (CPU) |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name in args.contenders:
        wall, cpu = per_image(name, "wall"), per_image(name, "cpu")
        rss = statistics.median(r["peak_rss"] for r in runs[name]) / 2**20
        ratio = ""
        if "scipy" in runs and name != "scipy":
            ratio = f"{per_image('scipy', 'wall') / wall:.1f}x ({per_image('scipy', 'cpu') / cpu:.1f}x)"
        print(f"| {name} | {wall:.4f} | {wall * args.images:.1f} | {cpu:.4f} | {rss:.0f} | {ratio} |")
    for name in args.contenders:
        if name != "scipy":
            worst = max(r["max_err"] for r in runs[name])
            print(
                f"# {name}: max abs err vs scipy.signal (images 0 and last) {worst:.3g}, "
                f"bound {runs[name][0]['bound']:.3g}"
            )


if __name__ == "__main__":
    main()
