"""Benchmark a 2 GiB BigTIFF stack through ``convflow run`` to zarr, with the run's peak RSS.

The input is a 256 x 2048 x 2048 uint16 BigTIFF (2 GiB of pixels, stored
uncompressed in 256 x 256 tiles), written page by page with tifffile into
``benchmarks/work/`` (git-ignored), so this script never holds it whole
either.  convflow reads it lazily through tifffile's zarr store and writes a
3-D Gaussian (sigma 1, truncate 4: 9 taps per axis) to a zarr v3 array with
the default codec (zstd).  It runs twice: with the working chunks convflow
picks for the file (whole planes, a few at a time) and with smaller ones
given in the config (``input.chunks``: 16 x 512 x 512).

The run is the real console command (``python -m convflow run``) in a child
process, on dask's threaded scheduler over all cores.  The parent samples the
child's RSS with psutil every 20 ms and also reads the kernel's high-water
mark (VmHWM) and its anonymous (heap) and file-backed parts from /proc, so a
short spike between samples still counts.  The point to check is that the
peak stays far below the file's 2 GiB, i.e. that the stack is read and held
chunk by chunk, never whole; the plan's own memory estimate is printed beside
it.  Each run's output is checked against scipy.ndimage on a few middle planes.

    python benchmarks/bench_tiff.py             # make the input, run, print, delete the scratch data
    python benchmarks/bench_tiff.py --keep      # keep benchmarks/work/tiff/ for a second run
    python benchmarks/bench_tiff.py --depth 64  # a 512 MiB stack, for a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import tifffile
import zarr

WORK = Path(__file__).resolve().parent / "work" / "tiff"
SIDE, TILE = 2048, 256
SAMPLE_SECONDS = 0.02

# The second run's working chunks: 16 planes of 512 x 512 (16 MiB of uint16).
SMALL_CHUNKS = (16, 512, 512)

CONFIG = """\
input: {{path: {input}{chunks}}}
kernels:
  smooth: {{type: gaussian, sigma: 1.0}}
stages:
  - name: smoothed
    steps: [{{kernel: smooth}}]
outputs:
  - {{stage: smoothed, path: {output}, dtype: uint16}}
"""


def tiles(depth: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield the stack's tiles in file order (page, tile row, tile column): blobs plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:SIDE, :SIDE]
    for z in range(depth):
        page = 20000 + 15000 * np.sin(x / 97.0 + z / 13.0) * np.cos(y / 61.0)
        page = (page + rng.normal(0, 2000, page.shape)).clip(0, 65535).astype(np.uint16)
        for row in range(0, SIDE, TILE):
            for column in range(0, SIDE, TILE):
                yield page[row : row + TILE, column : column + TILE]


def make_input(path: Path, depth: int) -> float:
    """Write the BigTIFF tile by tile; return the seconds it took."""
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(
            tiles(depth),
            shape=(depth, SIDE, SIDE),
            dtype=np.uint16,
            tile=(TILE, TILE),
            compression=None,
            photometric="minisblack",
            metadata={"axes": "ZYX"},
        )
    return time.perf_counter() - started


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS so far), RssAnon (heap) and RssFile (mapped files) of a process, in bytes."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key = line.split(":")[0]
                if key in ("VmHWM", "RssAnon", "RssFile"):
                    values[key] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return values


def run(config: Path) -> dict[str, float]:
    """Run ``convflow run CONFIG`` in a child, sampling its RSS; return seconds and peaks."""
    command = [sys.executable, "-m", "convflow", "run", str(config), "--overwrite", "-q"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process = psutil.Process(child.pid)
    sampled = hwm = anon = mapped = samples = 0
    while child.poll() is None:
        try:
            sampled = max(sampled, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        status = proc_status(child.pid)
        hwm = max(hwm, status.get("VmHWM", 0))
        anon, mapped = max(anon, status.get("RssAnon", 0)), max(mapped, status.get("RssFile", 0))
        samples += 1
        time.sleep(SAMPLE_SECONDS)
    out, err = child.communicate()
    seconds = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"convflow run failed (exit {child.returncode}):\n{out}{err}")
    return {
        "seconds": seconds,
        "sampled_peak_rss": sampled,
        "vmhwm": hwm,
        "anon": anon,
        "file": mapped,
        "samples": samples,
    }


def check(tiff: Path, output: Path, depth: int) -> float:
    """The largest difference from scipy.ndimage on a few middle planes (with their halo), in grey levels."""
    import scipy.ndimage as ndi

    middle = depth // 2
    with tifffile.TiffFile(tiff) as tif:
        store = zarr.open(tif.aszarr(), mode="r")
        # Planes middle-8 .. middle+8 hold every value the middle three planes borrow (radius 4).
        slab = store[middle - 8 : middle + 9].astype(np.float64)
    expected = ndi.gaussian_filter(slab, sigma=1.0, truncate=4.0, mode="reflect")[7:10]
    written = zarr.open_array(str(output), mode="r")[middle - 1 : middle + 2]
    expected = np.clip(np.round(expected), 0, 65535)
    return float(np.abs(written.astype(np.float64) - expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--depth", type=int, default=256, help="pages of 2048 x 2048 uint16 (default 256: 2 GiB)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch data in benchmarks/work/tiff/")
    args = parser.parse_args()

    tiff, output, config = WORK / "stack.tif", WORK / "smoothed.zarr", WORK / "tiff.yaml"
    free = shutil.disk_usage(WORK.parent if WORK.parent.exists() else Path(__file__).parent).free
    pixels = args.depth * SIDE * SIDE * 2
    if free < 3 * pixels:
        raise SystemExit(
            f"need about {3 * pixels / 2**30:.1f} GiB free for input and output; {free / 2**30:.1f} GiB"
        )
    try:
        made = 0.0 if tiff.exists() and tiff.stat().st_size >= pixels else make_input(tiff, args.depth)
        report = {
            "input": f"{tiff.name}: {args.depth} x {SIDE} x {SIDE} uint16 BigTIFF, {TILE} x {TILE} tiles, "
            f"uncompressed, {tiff.stat().st_size / 2**30:.2f} GiB",
            "written_in_s": round(made, 1),
            "cpus": os.cpu_count(),
            "total_memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        }
        print(json.dumps(report, indent=2), flush=True)
        for chunks in (None, SMALL_CHUNKS):
            print(json.dumps(measure(tiff, output, config, chunks, args.depth), indent=2), flush=True)
            shutil.rmtree(output)
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)


def measure(
    tiff: Path, output: Path, config: Path, chunks: tuple[int, ...] | None, depth: int
) -> dict[str, object]:
    """One run of the config with these input chunks (None: convflow's choice); its numbers."""
    given = "" if chunks is None else f", chunks: {list(chunks)}"
    config.write_text(CONFIG.format(input=tiff.name, chunks=given, output=output.name))
    plan = subprocess.run(
        [sys.executable, "-m", "convflow", "plan", str(config)], capture_output=True, text=True, check=True
    ).stdout
    pixels = depth * SIDE * SIDE * 2
    # The page cache is left as it is: a run right after writing the file reads it from memory.
    result = run(config)
    error = check(tiff, output, depth)
    stored = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    return {
        "input_chunks": "convflow's choice" if chunks is None else list(chunks),
        "plan": [line for line in plan.splitlines() if line.startswith(("input", "  float32", "memory"))],
        "run_s": round(result["seconds"], 1),
        "throughput_mib_s": round(pixels / 2**20 / result["seconds"], 1),
        "voxels_per_s_millions": round(pixels / 2 / 1e6 / result["seconds"], 1),
        "peak_rss_sampled_mib": round(result["sampled_peak_rss"] / 2**20),
        "peak_rss_vmhwm_mib": round(result["vmhwm"] / 2**20),
        "peak_rss_anon_mib": round(result["anon"] / 2**20),
        "peak_rss_file_mib": round(result["file"] / 2**20),
        "rss_samples": result["samples"],
        "peak_over_input": round(max(result["sampled_peak_rss"], result["vmhwm"]) / pixels, 3),
        "output_zarr_mib": round(stored / 2**20),
        "max_abs_error_vs_scipy_middle_planes": error,
    }


if __name__ == "__main__":
    main()
