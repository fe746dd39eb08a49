"""Out-of-core proof: a volume several times a worker's memory limit, filtered zarr -> zarr on a LocalCluster.

A float32 volume (default 1 GiB) is written to benchmarks/work/, then
gaussian-filtered (sigma 2, 3-D) into a zarr output by ``run_plan`` on a
LocalCluster whose workers have ``memory_limit`` each (default 256 MiB).
While it runs, the driver samples the RSS of every process of the cluster
(psutil) and the scheduler's view of spilled bytes; afterwards it reads
each worker's disk-write metrics and logs.  The proof holds when every
worker's peak RSS stays under the limit and nothing was spilled to disk.
The run is repeated with 1 and 2 workers for throughput; the output is
checked against scipy on a few blocks; everything in work/ is deleted.

    python benchmarks/bench_outofcore.py [--size 512 512 1024] [--limit 256MiB]
"""

from __future__ import annotations

import argparse
import io
import shutil
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import psutil
import scipy.ndimage as ndi
import zarr
from dask.utils import format_bytes, parse_bytes
from distributed import Client, LocalCluster

from convflow.config import load_config
from convflow.pipeline import make_plan, resolve_execution, run_plan

WORK = Path(__file__).parent / "work" / "outofcore"
CONFIG = """\
input: {{path: in.zarr}}
kernels: {{g: {{type: gaussian, sigma: 2, ndim: 3}}}}
stages: [{{name: smooth, steps: [{{kernel: g}}]}}]
outputs: [{{stage: smooth, path: out_{workers}.zarr, chunks: [{c}, {c}, {c}]}}]
execution: {{address: {address}}}
"""


class Sampler:
    """Peak RSS of each process under `root` (the cluster's nannies and workers), sampled every 0.1 s."""

    def __init__(self, root: psutil.Process, client: Client) -> None:
        self.root, self.client = root, client
        self.peak: dict[int, tuple[str, int]] = {}
        self.spilled_disk = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    name = " ".join(proc.cmdline()[-3:])[-60:]
                except psutil.Error:
                    continue
                if rss > self.peak.get(proc.pid, ("", 0))[1]:
                    self.peak[proc.pid] = (name, rss)
            try:
                workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            except Exception:
                continue
            for info in workers:
                self.spilled_disk = max(self.spilled_disk, info["metrics"]["spilled_bytes"]["disk"])

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_input(shape: tuple[int, ...], chunk: int) -> None:
    rng = da.random.default_rng(0)
    data = rng.random(shape, chunks=chunk, dtype=np.float32)
    data.to_zarr(str(WORK / "in.zarr"), overwrite=True, compute=True)


def run(workers: int, limit: str, chunk: int) -> dict:
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=limit,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # a free port: 8787 may be taken
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        (WORK / "p.yaml").write_text(
            CONFIG.format(workers=workers, c=chunk, address=cluster.scheduler_address)
        )
        config = load_config(WORK / "p.yaml")
        plan = make_plan(config, overwrite=True)
        worker_pids = set(client.run(lambda: __import__("os").getpid()).values())
        started = time.perf_counter()
        with Sampler(psutil.Process(), client) as sampler:
            run_plan(plan, resolve_execution(config), overwrite=True, progress="none", stream=io.StringIO())
        seconds = time.perf_counter() - started

        def disk_writes(dask_worker):
            return sum(v for k, v in dask_worker.digests_total.items() if "disk-write" in str(k))

        writes = client.run(disk_writes)
        logs = client.get_worker_logs()
        spill_lines = [
            line for lines in logs.values() for _, line in lines if "spill" in line.lower() or "paus" in line
        ]
    worker_peaks = {pid: rss for pid, (_, rss) in sampler.peak.items() if pid in worker_pids}
    return {
        "workers": workers,
        "seconds": seconds,
        "worker_peaks": worker_peaks,
        "all_peaks": sampler.peak,
        "spilled_disk_seen": sampler.spilled_disk,
        "disk_writes": sum(writes.values()),
        "spill_log_lines": spill_lines,
    }


def check_blocks(shape: tuple[int, ...], workers: int) -> float:
    """Largest error against scipy on the corner region (real edges) and a central one (halo 8 < 20)."""
    source = zarr.open_array(str(WORK / "in.zarr"))
    result = zarr.open_array(str(WORK / f"out_{workers}.zarr"))
    worst = 0.0
    for corner in (True, False):
        lo = [0 if corner else n // 2 - 20 for n in shape]
        region = tuple(slice(a, a + 120) for a in lo)
        expected = ndi.gaussian_filter(source[region].astype(np.float64), 2.0, truncate=4.0)
        inner = tuple(slice(0, 80) if corner else slice(20, 100) for _ in shape)
        worst = max(worst, float(np.abs(result[region][inner] - expected[inner]).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=[512, 512, 1024])
    parser.add_argument("--limit", default="256MiB")
    parser.add_argument("--chunk", type=int, default=64)
    args = parser.parse_args()
    shape = tuple(args.size)
    WORK.mkdir(parents=True, exist_ok=True)
    dask.config.set({"distributed.worker.daemon": True})
    try:
        t = time.perf_counter()
        make_input(shape, args.chunk)
        print(
            f"input {shape} float32 = {format_bytes(4 * int(np.prod(shape)))}, written in "
            f"{time.perf_counter() - t:.1f} s; limit {args.limit} per worker "
            f"(the volume is {4 * int(np.prod(shape)) / parse_bytes(args.limit):.1f}x the limit)"
        )
        volume = 4 * int(np.prod(shape))
        for workers in (1, 2):
            r = run(workers, args.limit, args.chunk)
            print(f"\n{workers} worker(s): {r['seconds']:.1f} s, {volume / 2**20 / r['seconds']:.1f} MiB/s")
            for pid, (name, rss) in sorted(r["all_peaks"].items()):
                role = (
                    "worker"
                    if pid in r["worker_peaks"]
                    else ("driver" if pid == psutil.Process().pid else "other")
                )
                print(f"  pid {pid} {role:<6} peak RSS {format_bytes(rss):>10}  {name}")
            print(
                f"  max worker RSS {format_bytes(max(r['worker_peaks'].values()))} vs limit {args.limit}; "
                f"spilled to disk (scheduler metric, max seen) {r['spilled_disk_seen']} B; "
                f"disk-write metric {r['disk_writes']}; spill/pause log lines {len(r['spill_log_lines'])}"
            )
            for line in r["spill_log_lines"][:5]:
                print("   ", line)
            print(f"  max |error| vs scipy on sample regions: {check_blocks(shape, workers):.2e}")
    finally:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
