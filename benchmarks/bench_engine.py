"""Benchmark convflow's engine against scipy.ndimage and dask-image, zarr to zarr.

Each workload runs through three contenders:

- ``scipy``: scipy.ndimage on the whole array in memory (the input is read
  from zarr first, untimed; only the filter call is timed);
- ``dask-image``: dask_image.ndfilters over the dask array read from zarr,
  written to zarr (timed from opening the input to the last chunk written);
- ``convflow``: convflow.convolve/correlate, read with convflow.io.open_input
  and written with convflow.io.write_output, as ``convflow run`` does (both
  read and write whole chunks as files, bypassing zarr-python's event loop;
  see convflow/io/_chunks.py).

Both chunked contenders use dask's threaded scheduler on all cores and write a
zarr v3 array with zarr's default codecs (bytes + zstd), chunked like the
input: the files are the same bytes either way.  Every repeat of every
(workload, contender) pair runs in a fresh subprocess, so its peak RSS
(VmHWM) is its own; the repeats go round by round through the contenders,
so bursts of other load on a shared machine spread over all of them.  Each run
reports wall time and CPU time (all threads).
Afterwards each chunked output is compared with scipy's, slab by slab, and
the largest absolute error printed.

Workloads (``--scale`` multiplies every axis of shapes and chunks):

- W1: 3-D Gaussian, sigma=2 (truncate 4: 17 taps), 512^3 float32, chunks 128^3
- W2: dense random 3x3x3 kernel (convolve), same volume
- W3: dense random 9x9x9 kernel (convolve), 256^3 float32, chunks 128^3
- W4: 9x9x9 box given as a dense array (convolve), 256^3 float32, chunks 128^3
- W5: 3x3 Sobel (d/dx, correlate) over the last two axes of 64 images of
  2048x2048 uint8, chunks (8, 2048, 2048), float32 result for every contender
  (dask-image: ndfilters.correlate with the 1x3x3 kernel on the float32 cast,
  because ndfilters.sobel on a 3-D array also smooths over the image axis)
- S3: a 3-step stack on W1's volume: gaussian sigma=1 (9 taps), the 3x3x3 sharpen
  kernel (convolve), sobel d/dx over all three axes (axis=-1, correlate, like
  scipy.ndimage.sobel); intermediates float32.  convflow fuses it into one halo
  pass with convflow.apply_stack; dask-image chains ndfilters.gaussian_filter,
  ndfilters.convolve and ndfilters.sobel; scipy applies the three in turn
- W8, W9, W10: sums of separable terms on W1's volume, each against W1's own
  Gaussian and dask-image's best equivalent: W8 the unsharp mask sigma=2,
  amount=1 (dask-image: ``x + (x - gaussian_filter(x, 2))``), W9 the LoG
  sigma=2 (``gaussian_laplace``), W10 the DoG sigma 1 minus sigma 2 (two
  ``gaussian_filter`` calls subtracted); convflow convolves with the library
  kernel, which carries its terms
- copy: W1's input copied zarr to zarr, the I/O floor: by dask (from_zarr ->
  to_zarr) and by convflow (open_input -> write_output); the faster one counts

Each chunked run also reports the number of tasks in the dask graph of the
final (lazy) array, materialised before writing and untimed.

``--memory`` instead runs W1 for convflow and dask-image at the volume V and
at 2V (twice as many z-slices) and prints peak RSS against the stated bound.

    python benchmarks/bench_engine.py                      # everything, 3 repeats
    python benchmarks/bench_engine.py --scale 0.25 --repeats 1
    python benchmarks/bench_engine.py --workloads W2 copy --contenders convflow
    python benchmarks/bench_engine.py --memory
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CONTENDERS = ("scipy", "dask-image", "convflow")
COPY = "copy"
DEFAULT_WORK = Path(__file__).resolve().parent / "work"
MIB = 2**20


@dataclass(frozen=True)
class Workload:
    """One benchmark case: an input volume and the filter every contender applies."""

    name: str
    title: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    seed: int

    @property
    def voxels(self) -> int:
        """Number of voxels of the volume."""
        return math.prod(self.shape)

    @property
    def input_name(self) -> str:
        """File name of the input, shared by workloads with the same volume."""
        shape = "x".join(map(str, self.shape))
        chunks = "x".join(map(str, self.chunks))
        return f"input_{shape}_c{chunks}_{self.dtype}_s{self.seed}.zarr"


BASE = {
    "W1": ("gaussian sigma=2, 3-D", (512, 512, 512), (128, 128, 128), "float32"),
    "W2": ("dense random 3x3x3", (512, 512, 512), (128, 128, 128), "float32"),
    "W3": ("dense random 9x9x9", (256, 256, 256), (128, 128, 128), "float32"),
    "W4": ("9x9x9 box as dense array", (256, 256, 256), (128, 128, 128), "float32"),
    "W5": ("3x3 sobel d/dx, 2-D over 64 images", (64, 2048, 2048), (8, 2048, 2048), "uint8"),
    "S3": ("3-step stack: gaussian sigma=1, sharpen, sobel", (512, 512, 512), (128, 128, 128), "float32"),
    "W8": ("unsharp sigma=2, amount=1, 3-D", (512, 512, 512), (128, 128, 128), "float32"),
    "W9": ("LoG sigma=2, 3-D", (512, 512, 512), (128, 128, 128), "float32"),
    "W10": ("DoG sigma=1 minus sigma=2, 3-D", (512, 512, 512), (128, 128, 128), "float32"),
    COPY: ("zarr -> zarr copy of W1's input", (512, 512, 512), (128, 128, 128), "float32"),
}


def workload(name: str, scale: float = 1.0, grow: int = 1) -> Workload:
    """Return workload `name` with every axis scaled by `scale` and axis 0 multiplied by `grow`."""
    title, shape, chunks, dtype = BASE[name]
    shape = tuple(max(1, round(n * scale)) for n in shape)
    chunks = tuple(max(1, min(round(c * scale), n)) for c, n in zip(chunks, shape, strict=True))
    shape = (shape[0] * grow, *shape[1:])
    return Workload(name, title, shape, chunks, dtype, seed=0)


# --- kernels -----------------------------------------------------------------------------------


def gaussian_kernel() -> Any:
    """W1's kernel for convflow: the library's gaussian, equal to scipy's gaussian_filter(sigma=2)."""
    from convflow import kernels

    return kernels.get("gaussian", sigma=2.0, ndim=3)


def sum_kernel(name: str) -> Any:
    """W8-W10's library kernel, which carries its separable terms."""
    from convflow import kernels

    return {
        "W8": lambda: kernels.get("unsharp", sigma=2.0, amount=1.0, ndim=3),
        "W9": lambda: kernels.get("log", sigma=2.0, ndim=3),
        "W10": lambda: kernels.get("dog", sigma1=1.0, sigma2=2.0, ndim=3),
    }[name]()


def dense_kernel(size: int) -> np.ndarray:
    """A dense random size^3 kernel (no zero weight, not separable), fixed seed."""
    return np.random.default_rng(size).uniform(-1.0, 1.0, (size,) * 3)


def box_kernel() -> np.ndarray:
    """The 9x9x9 box, normalised, as a plain dense array."""
    return np.full((9, 9, 9), 1.0 / 729.0)


def sobel_kernel() -> np.ndarray:
    """scipy.ndimage.sobel's 2-D correlation kernel for axis=-1: smooth [1, 2, 1] x derivative [-1, 0, 1]."""
    return np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])


def sharpen_kernel() -> np.ndarray:
    """S3's second step: convflow.kernels' 3x3x3 sharpen as a plain array (symmetric, sum 1)."""
    from convflow import kernels

    return np.asarray(kernels.get("sharpen", ndim=3), dtype=np.float64)


def stack_steps() -> list[Any]:
    """S3 for convflow: the three steps of the fused stack."""
    import convflow
    from convflow import kernels

    return [
        convflow.Step(kernels.get("gaussian", sigma=1, ndim=3)),
        convflow.Step(kernels.get("sharpen", ndim=3)),
        convflow.Step(kernels.get("sobel", axis=-1, ndim=3), op="correlate"),
    ]


def kernel_l1(name: str) -> float:
    """sum|k| of a workload's kernel, for the spec's tolerance (a stack: the product over its steps)."""
    if name == "S3":
        return 1.0 * float(np.abs(sharpen_kernel()).sum()) * 32.0  # 3-D sobel: 4 * 4 * 2
    return {
        "W1": 1.0,
        "W2": float(np.abs(dense_kernel(3)).sum()),
        "W3": float(np.abs(dense_kernel(9)).sum()),
        "W4": 1.0,
        "W5": 8.0,
        COPY: 1.0,
        **{sums: float(np.abs(np.asarray(sum_kernel(sums))).sum()) for sums in ("W8", "W9", "W10")},
    }[name]


def halo(name: str) -> int:
    """Kernel radius of a workload: the band at the faces where boundary handling matters."""
    return {
        "W1": 8,
        "W2": 1,
        "W3": 4,
        "W4": 4,
        "W5": 1,
        "S3": 4 + 1 + 1,
        "W8": 8,
        "W9": 8,
        "W10": 8,
        COPY: 0,
    }[name]


# --- the filters, one per contender ----------------------------------------------------------


def scipy_filter(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The whole-array scipy.ndimage call of a workload."""
    import scipy.ndimage as ndi

    def sobel(x: np.ndarray) -> np.ndarray:
        # scipy.ndimage.sobel restricted to the last two axes (it has no `axes`):
        # the same two correlate1d passes, written to a float32 result.
        out = ndi.correlate1d(x, [-1.0, 0.0, 1.0], axis=-1, output=np.float32)
        return ndi.correlate1d(out, [1.0, 2.0, 1.0], axis=-2, output=out)

    return {
        "W1": lambda x: ndi.gaussian_filter(x, 2.0),
        "W2": lambda x: ndi.convolve(x, dense_kernel(3)),
        "W3": lambda x: ndi.convolve(x, dense_kernel(9)),
        "W4": lambda x: ndi.convolve(x, box_kernel()),
        "W5": sobel,
        # sequential, float32 intermediates; ndi.sobel correlates [-1, 0, 1] along axis -1
        # and smooths [1, 2, 1] along the others, as kernels.get("sobel", axis=-1) does
        "S3": lambda x: ndi.sobel(ndi.convolve(ndi.gaussian_filter(x, 1.0), sharpen_kernel()), axis=-1),
        "W8": lambda x: x + (x - ndi.gaussian_filter(x, 2.0)),
        "W9": lambda x: ndi.gaussian_laplace(x, 2.0),
        "W10": lambda x: ndi.gaussian_filter(x, 1.0) - ndi.gaussian_filter(x, 2.0),
    }[name]


def chunked_filter(name: str, contender: str) -> Callable[[Any], Any]:
    """The lazy dask-image or convflow call of a workload."""
    if contender == "convflow":
        import convflow

        return {
            "W1": lambda x: convflow.convolve(x, gaussian_kernel()),
            "W2": lambda x: convflow.convolve(x, dense_kernel(3)),
            "W3": lambda x: convflow.convolve(x, dense_kernel(9)),
            "W4": lambda x: convflow.convolve(x, box_kernel()),
            "W5": lambda x: convflow.correlate(x, sobel_kernel()),
            "S3": lambda x: convflow.apply_stack(x, stack_steps()),
            "W8": lambda x: convflow.convolve(x, sum_kernel("W8")),
            "W9": lambda x: convflow.convolve(x, sum_kernel("W9")),
            "W10": lambda x: convflow.convolve(x, sum_kernel("W10")),
            COPY: lambda x: x,
        }[name]
    if contender == "dask-image":
        from dask_image import ndfilters

        return {
            "W1": lambda x: ndfilters.gaussian_filter(x, 2.0),
            "W2": lambda x: ndfilters.convolve(x, dense_kernel(3)),
            "W3": lambda x: ndfilters.convolve(x, dense_kernel(9)),
            "W4": lambda x: ndfilters.convolve(x, box_kernel()),
            "W5": lambda x: ndfilters.correlate(x.astype(np.float32), sobel_kernel()[None]),
            "S3": lambda x: ndfilters.sobel(
                ndfilters.convolve(ndfilters.gaussian_filter(x, 1.0), sharpen_kernel()), axis=-1
            ),
            "W8": lambda x: x + (x - ndfilters.gaussian_filter(x, 2.0)),
            "W9": lambda x: ndfilters.gaussian_laplace(x, 2.0),
            "W10": lambda x: ndfilters.gaussian_filter(x, 1.0) - ndfilters.gaussian_filter(x, 2.0),
        }[name]
    if contender == COPY:
        return lambda x: x
    raise ValueError(f"unknown contender {contender!r}; use one of {', '.join((*CONTENDERS, COPY))}")


# --- data ----------------------------------------------------------------------------------------


def make_input(w: Workload, path: Path) -> None:
    """Write `w`'s random input volume to a zarr v3 array at `path`, one chunk-row slab at a time."""
    import zarr

    if path.exists():
        return
    array = zarr.create_array(str(path), shape=w.shape, chunks=w.chunks, dtype=w.dtype)
    step = w.chunks[0]
    for start in range(0, w.shape[0], step):
        rng = np.random.default_rng([w.seed, start])
        shape = (min(step, w.shape[0] - start), *w.shape[1:])
        if w.dtype == "uint8":
            slab = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            slab = rng.random(shape, dtype=np.float32)
        array[start : start + shape[0]] = slab


def peak_rss() -> int:
    """This process's peak resident set size in bytes.

    Linux's VmHWM belongs to the process image and starts afresh at exec;
    ``ru_maxrss`` does not: it keeps the parent's RSS at fork, which would
    charge the parent's memory to every child.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write(result: Any, target: Any, store: str, step: int) -> None:
    """Compute `result` into the zarr array `target`: in one graph, or one chunk row (axis 0) at a time.

    ``slabs`` is the out-of-core workaround the memory check compares: each
    graph only reaches the input rows its output row needs, so what dask
    holds is bounded by a few rows whatever the volume's length.
    """
    import dask.array as da

    if store == "whole":
        da.to_zarr(result, target)
        return
    for start in range(0, result.shape[0], step):
        region = (slice(start, min(start + step, result.shape[0])),) + (slice(None),) * (result.ndim - 1)
        da.store(result[region], target, regions=region, lock=False)


def open_chunked(source: Path, contender: str) -> Any:
    """The input as each contender's users open it: convflow.io.open_input, or dask's from_zarr."""
    import dask.array as da
    import zarr

    if contender == "convflow":
        from convflow.io import open_input

        return open_input(source).array
    return da.from_zarr(zarr.open_array(str(source), mode="r"))


def run_one(
    w: Workload, contender: str, repeats: int, work: Path, threads: int, store: str = "whole"
) -> dict[str, Any]:
    """Time one contender on one workload, in this (fresh) process; keep the last output."""
    import dask
    import dask.array as da
    import psutil
    import zarr

    source = work / w.input_name
    out_path = work / f"out_{w.name}_{contender}.zarr"
    times: list[float] = []
    cpu: list[float] = []  # CPU seconds of the whole process (all threads): less disturbed by other load
    if contender == "scipy":
        image = zarr.open_array(str(source), mode="r")[...]
        filt = scipy_filter(w.name)
        filt(image[:1])  # import and warm up outside the timing
        baseline = psutil.Process().memory_info().rss
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            result = filt(image)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
        peak = peak_rss()
        reference = work / f"ref_{w.name}.npy"
        if not reference.exists():
            np.save(reference, result)
        del result
    else:
        filt = chunked_filter(w.name, contender)
        with dask.config.set(scheduler="threads", num_workers=threads):
            # Warm up on one chunk in memory (imports, thread pools, codecs), so
            # the baseline is the RSS a run starts from, not the bare imports.
            # Each contender warms up the writer its timed runs use.
            tiny = da.zeros(w.chunks, chunks=w.chunks, dtype=w.dtype)
            warm = filt(tiny)
            if contender == "convflow" and store == "whole":
                from convflow.io import write_output

                scratch = work / "warm_convflow.zarr"
                shutil.rmtree(scratch, ignore_errors=True)
                write_output(warm, scratch, compression={"codec": "zstd", "level": 0})
                shutil.rmtree(scratch)
            else:
                memory = zarr.storage.MemoryStore()
                da.to_zarr(warm, zarr.create_array(memory, shape=w.chunks, chunks=w.chunks, dtype=warm.dtype))
            del tiny, warm
            # Tasks in the final array's graph, materialised (untimed, before the baseline).
            lazy = filt(open_chunked(source, contender))
            tasks = len(dict(lazy.__dask_graph__()))
            del lazy
            baseline = psutil.Process().memory_info().rss
            for _ in range(repeats):
                shutil.rmtree(out_path, ignore_errors=True)
                start, cpu_start = time.perf_counter(), time.process_time()
                result = filt(open_chunked(source, contender))
                if contender == "convflow" and store == "whole":
                    # convflow's own writer, as `convflow run` uses it: it computes in waves of
                    # neighbouring blocks, which bounds memory; same codec as zarr's default.
                    from convflow.io import write_output

                    write_output(result, out_path, chunks=w.chunks, compression={"codec": "zstd", "level": 0})
                else:
                    target = zarr.create_array(
                        str(out_path), shape=w.shape, chunks=w.chunks, dtype=result.dtype
                    )
                    write(result, target, store, w.chunks[0])
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
        peak = peak_rss()
    return {
        "times": times,
        "cpu": cpu,
        "peak_rss": peak,
        "baseline_rss": baseline,
        "output": str(out_path),
        "tasks": None if contender == "scipy" else tasks,
    }


def child(
    w: Workload,
    contender: str,
    args: argparse.Namespace,
    grow: int = 1,
    store: str = "whole",
    repeats: int | None = None,
) -> dict[str, Any]:
    """Run `run_one` in a fresh Python process and return what it reports."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        w.name,
        contender,
        "--repeats",
        str(args.repeats if repeats is None else repeats),
        "--scale",
        str(args.scale),
        "--grow",
        str(grow),
        "--threads",
        str(args.threads),
        "--output-dir",
        str(args.output_dir),
        "--store",
        store,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{w.name} {contender} failed (exit {done.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


def compare(w: Workload, output: str, reference: Path) -> dict[str, float]:
    """Largest |output - scipy| overall and away from the faces (farther than the halo), slab by slab."""
    import zarr

    ref = np.load(reference, mmap_mode="r")
    out = zarr.open_array(output, mode="r")
    band = halo(w.name)
    spatial = (1, 2) if w.name == "W5" else tuple(range(len(w.shape)))
    worst, worst_inside = 0.0, 0.0
    step = w.chunks[0]
    for start in range(0, w.shape[0], step):
        stop = min(start + step, w.shape[0])
        err = np.abs(np.asarray(out[start:stop], dtype=np.float64) - ref[start:stop])
        worst = max(worst, float(err.max()))
        inside = [slice(None)] * err.ndim
        for axis in spatial:
            if axis == 0:
                inside[0] = slice(max(0, band - start), max(0, min(stop, w.shape[0] - band) - start))
            else:
                inside[axis] = slice(band, err.shape[axis] - band)
        worst_inside = max(worst_inside, float(err[tuple(inside)].max(initial=0.0)))
    return {"max_err": worst, "max_err_inside": worst_inside}


# --- the parent: run everything, check, report ----------------------------------------------------


def versions() -> str:
    """One line with the versions that matter."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for package in ("numpy", "scipy", "dask", "dask-image", "zarr", "convflow"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} -")
    return ", ".join(parts)


def tolerance(w: Workload) -> float:
    """The spec's float32 tolerance for this workload: 1e-5 * sum|k| * max|x|."""
    return 1e-5 * kernel_l1(w.name) * (255.0 if w.dtype == "uint8" else 1.0)


def benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every selected (workload, contender), one fresh process per repeat, and check it against scipy.

    The repeats go round by round, each round through every contender in a
    rotated order, so a burst of other load on a shared machine is spread
    over the contenders instead of landing on one of them.
    """
    rows = []
    for name in args.workloads:
        w = workload(name, args.scale)
        make_input(w, args.output_dir / w.input_name)
        contenders = [c for c in CONTENDERS if c in args.contenders]
        if name == COPY:
            contenders = [COPY] + [c for c in contenders if c == "convflow"]
        reference = args.output_dir / f"ref_{name}.npy"
        runs: dict[str, dict[str, Any]] = {c: {"times": [], "cpu": [], "peak": 0} for c in contenders}
        for round_ in range(args.repeats):
            shift = round_ % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                report = child(w, contender, args, store=args.store, repeats=1)
                runs[contender]["times"] += report["times"]
                runs[contender]["cpu"] += report["cpu"]
                runs[contender]["peak"] = max(runs[contender]["peak"], report["peak_rss"])
                runs[contender]["baseline"] = report["baseline_rss"]
                runs[contender]["output"] = report["output"]
                runs[contender]["tasks"] = report.get("tasks")
        for contender in contenders:
            run = runs[contender]
            median = statistics.median(run["times"])
            row = {
                "workload": name,
                "contender": contender,
                "median_s": median,
                "best_s": min(run["times"]),
                "cpu_s": statistics.median(run["cpu"]),
                "times": run["times"],
                "mvox_s": w.voxels / median / 1e6,
                "peak_rss_mib": run["peak"] / MIB,
                "baseline_rss_mib": run["baseline"] / MIB,
                "tasks": run["tasks"],
            }
            if contender in ("dask-image", "convflow") and reference.exists():
                row.update(compare(w, run["output"], reference))
                row["tolerance"] = tolerance(w)
            if contender != "scipy":
                shutil.rmtree(run["output"], ignore_errors=True)
            rows.append(row)
            print(format_row(w, row), flush=True)
        reference.unlink(missing_ok=True)
    for row in rows:
        peer = [r for r in rows if r["workload"] == row["workload"] and r["contender"] == "dask-image"]
        row["vs_dask_image"] = row["mvox_s"] / peer[0]["mvox_s"] if peer else None
        row["vs_dask_image_best"] = peer[0]["best_s"] / row["best_s"] if peer else None
        row["vs_dask_image_cpu"] = peer[0]["cpu_s"] / row["cpu_s"] if peer else None
    return rows


def format_row(w: Workload, row: dict[str, Any]) -> str:
    """One progress line."""
    times = ", ".join(f"{t:.2f}" for t in row["times"])
    text = (
        f"{w.name:<5} {row['contender']:<10} {w.shape!s:<16} median {row['median_s']:7.2f} s "
        f"({times}; CPU {row['cpu_s']:.2f} s)  {row['mvox_s']:7.1f} Mvox/s"
        f"  peak RSS {row['peak_rss_mib']:6.0f} MiB"
    )
    if row.get("tasks") is not None:
        text += f"  {row['tasks']} tasks"
    if "max_err" in row:
        text += (
            f"  max|err| {row['max_err']:.2e} (away from faces {row['max_err_inside']:.2e};"
            f" tol {row['tolerance']:.1e})"
        )
    return text


def markdown(rows: list[dict[str, Any]], scale: float) -> str:
    """The results table in markdown."""
    lines = [
        "| workload | contender | median s | best s | CPU s | Mvox/s | peak RSS MiB | graph tasks "
        "| vs dask-image: median (best, CPU) | max abs err (away from faces) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        w = workload(row["workload"], scale)
        ratio = ""
        if row["vs_dask_image"] is not None:
            ratio = (
                f"{row['vs_dask_image']:.2f}x ({row['vs_dask_image_best']:.2f}x, "
                f"{row['vs_dask_image_cpu']:.2f}x)"
            )
        err = f"{row['max_err']:.1e} ({row['max_err_inside']:.1e})" if "max_err" in row else ""
        tasks = "" if row.get("tasks") is None else str(row["tasks"])
        lines.append(
            f"| {w.name} | {row['contender']} | {row['median_s']:.2f} | {row['best_s']:.2f} "
            f"| {row['cpu_s']:.1f} | {row['mvox_s']:.1f} | {row['peak_rss_mib']:.0f} | {tasks} "
            f"| {ratio} | {err} |"
        )
    return "\n".join(lines)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's throughput targets, met or not."""

    def ratio(name: str) -> float | None:
        found = [r["vs_dask_image"] for r in rows if r["workload"] == name and r["contender"] == "convflow"]
        return found[0] if found and found[0] is not None else None

    lines = []
    for name, goal in (("W3", 10.0), ("W4", 20.0), ("W1", 1.5), ("W2", 1.5)):
        value = ratio(name)
        if value is not None:
            lines.append(
                f"{name} convflow >= {goal:g}x dask-image: {value:.2f}x "
                f"-> {'met' if value >= goal else 'NOT met'}"
            )
    w2 = [r["mvox_s"] for r in rows if r["workload"] == "W2" and r["contender"] == "convflow"]
    floor = max((r["mvox_s"] for r in rows if r["workload"] == COPY), default=None)
    if w2 and floor:
        share = w2[0] / floor
        lines.append(
            f"W2 convflow >= half the (faster) copy floor: {w2[0]:.1f} / {floor:.1f} Mvox/s = {share:.2f} "
            f"-> {'met' if share >= 0.5 else 'NOT met'}"
        )
    gaussian = [r["median_s"] for r in rows if r["workload"] == "W1" and r["contender"] == "convflow"]
    for name in ("W8", "W9", "W10"):
        value = ratio(name)
        if value is None:
            continue
        line = f"{name} convflow >= 2x dask-image: {value:.2f}x -> {'met' if value >= 2.0 else 'NOT met'}"
        ours = [r["median_s"] for r in rows if r["workload"] == name and r["contender"] == "convflow"]
        if gaussian and ours:
            share = ours[0] / gaussian[0]
            line += (
                f"; within 1.5x of W1's convflow time: {ours[0]:.2f} / {gaussian[0]:.2f} s = {share:.2f}x "
                f"-> {'met' if share <= 1.5 else 'NOT met'}"
            )
        lines.append(line)
    stack = {r["contender"]: r for r in rows if r["workload"] == "S3"}
    if "convflow" in stack and "dask-image" in stack:
        fused, chain = stack["convflow"], stack["dask-image"]
        fast = fused["vs_dask_image"] >= 2.0
        fewer = fused["tasks"] < chain["tasks"]
        lines.append(
            f"S3 convflow stack >= 2x dask-image's chain: {fused['vs_dask_image']:.2f}x "
            f"-> {'met' if fast else 'NOT met'}; fewer graph tasks: {fused['tasks']} vs {chain['tasks']} "
            f"-> {'met' if fewer else 'NOT met'}; target {'met' if fast and fewer else 'NOT met'}"
        )
    return lines


def memory_bound(w: Workload, threads: int, baseline: float) -> tuple[float, str]:
    """The stated peak-RSS bound of a chunked W1 run, in bytes, and how it is made up.

    Per thread, one task holds its padded block (chunk + 2 * halo per axis,
    float32), two more padded blocks of temporaries (the outputs of
    consecutive 1-D passes), the result chunk and zarr's encode buffer (one
    more chunk).  Besides the running tasks, the input chunks a row of output
    chunks borrows from must be decoded: three chunk rows (axis 0) across the
    cross-section (axes 1 and 2).  Nothing in it grows with axis 0, so
    doubling the volume along axis 0 must leave the bound, and a run that
    keeps it, unchanged.
    """
    chunk = math.prod(w.chunks) * 4
    padded = math.prod(c + 2 * halo(w.name) for c in w.chunks) * 4
    per_task = 3 * padded + 2 * chunk
    cross = math.prod(math.ceil(n / c) for n, c in zip(w.shape[1:], w.chunks[1:], strict=True))
    rows = 3 * cross * chunk
    bound = baseline + threads * per_task + rows
    text = (
        f"baseline {baseline / MIB:.0f} + {threads} threads x {per_task / MIB:.0f} MiB per task "
        f"+ 3 rows x {cross} chunks x {chunk / MIB:.0f} MiB"
    )
    return bound, text


def memory(args: argparse.Namespace) -> list[str]:
    """Run W1 for convflow and dask-image at V and 2V, both ways of storing; peak RSS against the bound."""
    lines: list[str] = []
    peaks: dict[tuple[str, str, int], float] = {}
    saved = args.repeats
    args.repeats = 1

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    try:
        for grow in (1, 2):
            w = workload("W1", args.scale, grow)
            path = args.output_dir / w.input_name
            make_input(w, path)
            for store in ("whole", "slabs"):
                for contender in ("convflow", "dask-image"):
                    report = child(w, contender, args, grow, store)
                    shutil.rmtree(report["output"], ignore_errors=True)
                    bound, text = memory_bound(w, args.threads, report["baseline_rss"])
                    peak = report["peak_rss"]
                    peaks[store, contender, grow] = peak
                    say(
                        f"W1 {contender:<10} store={store:<5} {w.shape!s:<16}"
                        f" volume {w.voxels * 4 / MIB:5.0f} MiB"
                        f"  time {report['times'][0]:6.2f} s  peak RSS {peak / MIB:5.0f} MiB"
                        f"  bound {bound / MIB:4.0f} MiB ({text})"
                        f" -> {'holds' if peak <= bound else 'EXCEEDED'}"
                    )
            if grow > 1:
                shutil.rmtree(path, ignore_errors=True)
        volume = workload("W1", args.scale).voxels * 4
        for store in ("whole", "slabs"):
            for contender in ("convflow", "dask-image"):
                growth = peaks[store, contender, 2] - peaks[store, contender, 1]
                say(
                    f"doubling, {contender:<10} store={store:<5}: peak RSS grew {growth / MIB:+5.0f} MiB "
                    f"for {volume / MIB:.0f} MiB more volume ({growth / volume:.0%})"
                )
    finally:
        args.repeats = saved
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run one contender (child) or the whole benchmark (parent)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = [*BASE]
    parser.add_argument(
        "--workloads", nargs="+", choices=names, default=names, metavar="W", help=f"of {names}"
    )
    parser.add_argument(
        "--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS), help="default: all three"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per contender; the median counts (default 3)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="factor on every axis of shapes and chunks (default 1)"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="dask threads (default: all cores)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_WORK,
        help=f"scratch zarr data, deleted at the end (default {DEFAULT_WORK})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs in --output-dir")
    parser.add_argument(
        "--memory", action="store_true", help="run the peak-memory check (W1 at V and 2V) instead"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--one", nargs=2, metavar=("W", "CONTENDER"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--store",
        choices=("whole", "slabs"),
        default="whole",
        help="chunked contenders write in one graph (default) or one chunk row of axis 0 at a time",
    )
    parser.add_argument("--grow", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.output_dir = args.output_dir.resolve()

    if args.one:
        name, contender = args.one
        w = workload(name, args.scale, args.grow)
        report = run_one(w, contender, args.repeats, args.output_dir, args.threads, args.store)
        print("RESULT " + json.dumps(report), flush=True)
        return 0

    args.output_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"{datetime.date.today()}  {platform.node()}  {os.cpu_count()} cores  {args.threads} dask threads"
        f"  load average at start {os.getloadavg()[0]:.2f}"
    )
    print(versions(), flush=True)
    result: dict[str, Any] = {"versions": versions(), "argv": sys.argv[1:], "scale": args.scale}
    try:
        if args.memory:
            result["memory"] = memory(args)
        else:
            rows = benchmark(args)
            result["rows"] = rows
            print("\n" + markdown(rows, args.scale))
            result["targets"] = targets(rows)
            print("\n" + "\n".join(result["targets"]))
    finally:
        if not args.keep:
            for path in args.output_dir.glob("*"):
                if path.name.startswith(("input_", "out_", "ref_")):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            if args.output_dir == DEFAULT_WORK and not any(args.output_dir.iterdir()):
                args.output_dir.rmdir()
    print(f"load average at the end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
