"""Benchmark convflow at scale: plan and run cost against the number of chunks (issue #12).

Volumes are virtual: a uint16 zarr v3 array of side^3 in 128^3 chunks made of
metadata only (every chunk reads as the fill value), plus a few stored chunks
of random values at the origin, so that a petabyte volume costs nothing on
disk.  The pipeline is one Gaussian step (sigma 2) written to a float32 zarr
output, as the issue's table has it.  Every command runs in a fresh
subprocess (`convflow plan` / `convflow run`), whose peak RSS is read from
the kernel (``wait4``'s ru_maxrss), so each figure is that process's own.

- ``plan``: `convflow plan` on 65536^3 (2^48 voxels).  Target: <= 5 s, <= 300 MiB.
- ``run``: `convflow run` at 512^3, 1024^3, 8192^3 and 16384^3, each stopped
  after ``--seconds`` (SIGINT, as a user's Ctrl-C).  Reported: time to the
  first written chunk file, chunks written per second from then on, seconds
  per chunk, and peak RSS.  Targets: first chunk <= 5 s everywhere, peak RSS
  within 10% between 512^3, 8192^3 and 16384^3, seconds per chunk at 8192^3
  within 10% of 1024^3.
- ``cluster``: the same runs at 1024^3 and 8192^3 (``--cluster-sides``), each
  against a fresh scheduler: on the LocalCluster that ``execution: {scheduler:
  distributed}`` starts (its scheduler lives in the run's process, so the
  scheduler process's peak RSS is that process's own VmHWM, sampled while it
  runs, without its worker processes) and on an existing ``dask scheduler`` +
  ``dask worker`` on 127.0.0.1 (the scheduler process's VmHWM before and
  after the run).  Target: no growth from 1024^3 to 8192^3.

    python benchmarks/bench_scale.py                      # everything
    python benchmarks/bench_scale.py --parts plan run --seconds 30
    python benchmarks/bench_scale.py --parts cluster --seconds 60
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zarr

CONFIG = """\
input: {{path: {input}}}
kernels:
  smooth: {{type: gaussian, sigma: 2, ndim: 3}}
stages:
  - {{name: smoothed, steps: [{{kernel: smooth}}]}}
outputs:
  - {{stage: smoothed, path: {output}}}
{execution}"""


def virtual_volume(folder: Path, side: int) -> Path:
    """A side^3 uint16 zarr of 128^3 chunks: metadata, and the 2 x 2 x 2 chunks at the origin stored."""
    path = folder / f"v{side}.zarr"
    if not path.exists():
        array = zarr.create_array(str(path), shape=(side,) * 3, chunks=(128,) * 3, dtype=np.uint16)
        corner = min(side, 256)
        array[:corner, :corner, :corner] = np.random.default_rng(0).integers(
            0, 4096, (corner,) * 3, dtype=np.uint16
        )
    return path


def config(folder: Path, side: int, name: str, execution: str = "") -> tuple[Path, Path]:
    """The config file of a run over the side^3 volume, and its output."""
    output = folder / f"out-{name}.zarr"
    if output.exists():
        shutil.rmtree(output)
    path = folder / f"{name}.yaml"
    path.write_text(CONFIG.format(input=virtual_volume(folder, side), output=output, execution=execution))
    return path, output


def measured(command: list[str], seconds: float | None = None, watch: Path | None = None) -> dict[str, float]:
    """Run `command`; stop it with SIGINT after `seconds` (SIGKILL 60 s later); its wall time and peak RSS.

    ``rss_mib`` is ``wait4``'s (the largest of the process and its children),
    ``own_mib`` the process's own VmHWM, sampled until it ends; ``first`` is
    when the first chunk file appeared under `watch`.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.monotonic()
    # A shell starts background jobs with SIGINT ignored, and Python then installs no handler: the
    # child gets the default back, so the SIGINT below stops it as Ctrl-C would.
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = None
    stopped = None
    own = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # poll() would reap it, rusage lost
        if pid:
            break
        own = max(own, _vm_hwm(process.pid))
        now = time.monotonic() - started
        if first is None and watch is not None and _any_chunk(watch):
            first = now
        if seconds is not None and now >= seconds and stopped is None:
            process.send_signal(signal.SIGINT)
            stopped = now
        if stopped is not None and now >= stopped + 60:
            process.kill()  # a run that does not stop on SIGINT must not stall the benchmark
        time.sleep(0.05)
    process.returncode = status
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_mib": usage.ru_maxrss / 1024,
        "own_mib": own,
        "first": first or float("nan"),
    }


def _any_chunk(output: Path) -> bool:
    folder = output / "c"
    return folder.exists() and any(files for _, _, files in os.walk(folder))


def chunk_files(output: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(output / "c"))


def part_plan(folder: Path) -> None:
    path, _ = config(folder, 65536, "plan")
    result = measured([sys.executable, "-m", "convflow", "plan", str(path)])
    print(
        f"plan 65536^3: {result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU, peak RSS "
        f"{result['rss_mib']:.0f} MiB (targets: 5 s, 300 MiB)"
    )
    small, _ = config(folder, 512, "plan512")
    result = measured([sys.executable, "-m", "convflow", "plan", str(small)])
    print(f"plan 512^3 (for comparison): {result['wall']:.2f} s wall, {result['cpu']:.2f} s CPU", flush=True)


def part_run(
    folder: Path, seconds: float, sides: list[int], execution: str = "", label: str = "threads"
) -> None:
    rows = []
    for side in sides:
        path, output = config(folder, side, f"run{side}", execution)
        result = measured([sys.executable, "-m", "convflow", "run", str(path)], seconds, output)
        written = chunk_files(output)
        span = result["wall"] - result["first"]
        rate = written / span if span > 0 else float("nan")
        rows.append((side, result, written, rate))
        print(
            f"{label} {side}^3: first chunk after {result['first']:.2f} s, {written} chunks in {span:.1f} s "
            f"= {rate:.2f} chunks/s ({1 / rate if rate else float('nan'):.3f} s/chunk), "
            f"peak RSS {result['rss_mib']:.0f} MiB",
            flush=True,
        )
        shutil.rmtree(output, ignore_errors=True)
    rss = [r["rss_mib"] for _, r, _, _ in rows]
    print(f"{label}: peak RSS max/min {max(rss) / min(rss):.3f}")
    rates = {side: rate for side, _, _, rate in rows}
    if 1024 in rates and 8192 in rates:
        print(f"{label}: cost per chunk 8192^3 / 1024^3 = {rates[1024] / rates[8192]:.3f}")


def part_cluster(folder: Path, seconds: float, sides: list[int]) -> None:
    """Each side's run against a fresh scheduler of each kind; the scheduler process's peak RSS."""
    for kind in ("LocalCluster", "dask scheduler"):
        peaks = {}
        for side in sides:
            if kind == "LocalCluster":
                execution = "execution: {scheduler: distributed, workers: 2, threads: 1, memory_limit: 2GiB}"
                path, output = config(folder, side, f"local{side}", execution)
                result = measured([sys.executable, "-m", "convflow", "run", str(path)], seconds, output)
                idle, peak = float("nan"), result["own_mib"]
            else:
                with dask_scheduler() as (address, scheduler):
                    idle = _vm_hwm(scheduler.pid)
                    path, output = config(folder, side, f"remote{side}", f"execution: {{address: {address}}}")
                    result = measured([sys.executable, "-m", "convflow", "run", str(path)], seconds, output)
                    peak = _vm_hwm(scheduler.pid)
            written = chunk_files(output)
            peaks[side] = peak
            before = "" if idle != idle else f" (idle before the run: {idle:.0f} MiB)"  # nan: not known
            print(
                f"{kind} {side}^3: {written} chunks in {result['wall']:.1f} s, scheduler process peak RSS "
                f"{peak:.0f} MiB{before}, run's process {result['own_mib']:.0f} MiB",
                flush=True,
            )
            shutil.rmtree(output, ignore_errors=True)
        low, high = min(sides), max(sides)
        print(f"{kind}: scheduler peak RSS {high}^3 / {low}^3 = {peaks[high] / peaks[low]:.3f}", flush=True)


@contextlib.contextmanager
def dask_scheduler() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``dask scheduler`` and one ``dask worker`` (2 threads) on 127.0.0.1, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler_options = ["--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0"]
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", *scheduler_options], **quiet
    )
    worker_options = ["--nthreads", "2", "--memory-limit", "4GiB", "--host", "127.0.0.1"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, *worker_options],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        **quiet,
    )
    try:
        from distributed import Client

        with Client(address, timeout=120) as client:  # gone before the scheduler's RSS is first read
            client.wait_for_workers(1, timeout=120)
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _vm_hwm(pid: int) -> float:
    """Peak RSS of a running process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["plan", "run", "cluster"])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long each run goes before SIGINT")
    parser.add_argument("--sides", nargs="+", type=int, default=[512, 1024, 8192, 16384])
    parser.add_argument("--cluster-sides", nargs="+", type=int, default=[1024, 8192])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    try:
        if "plan" in args.parts:
            part_plan(folder)
        if "run" in args.parts:
            part_run(folder, args.seconds, args.sides)
        if "cluster" in args.parts:
            part_cluster(folder, args.seconds, args.cluster_sides)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
