"""Benchmark sharded zarr v3 outputs against one file per chunk (issue #12 item 5).

One Gaussian step (sigma 2) over a side^3 uint16 volume of random values in
128^3 chunks, written by ``convflow run`` (a fresh subprocess each, on the
threaded scheduler) to a uint16 output in 128^3 chunks: once unsharded, once
in shards of ``--shard``^3.  Reported per run: wall and CPU seconds, peak RSS
(``wait4``'s ru_maxrss), the files written, and MiB written per second.  The
two outputs' values are compared at the end: they must be equal.

    python benchmarks/bench_shards.py                        # 1024^3, shards of 512^3, 3 rounds
    python benchmarks/bench_shards.py --side 256 --shard 256 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr
from bench_scale import measured

CONFIG = """\
input: {{path: {input}}}
kernels:
  smooth: {{type: gaussian, sigma: 2, ndim: 3}}
stages:
  - {{name: smoothed, steps: [{{kernel: smooth}}]}}
outputs:
  - {{stage: smoothed, path: {output}, dtype: uint16, chunks: [128, 128, 128]{shards}}}
"""


def volume(folder: Path, side: int) -> Path:
    """A side^3 uint16 zarr of random values in 128^3 chunks, written slab by slab."""
    path = folder / f"in{side}.zarr"
    if not path.exists():
        array = zarr.create_array(str(path), shape=(side,) * 3, chunks=(128,) * 3, dtype=np.uint16)
        rng = np.random.default_rng(0)
        for start in range(0, side, 128):
            stop = min(side, start + 128)
            array[start:stop] = rng.integers(0, 4096, (stop - start, side, side), dtype=np.uint16)
    return path


def files_under(path: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(path / "c"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--shard", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="a scratch folder (default: a temporary one)")
    args = parser.parse_args()
    if args.shard % 128:
        parser.error("--shard must be a multiple of the 128^3 chunks")
    folder = args.work or Path(tempfile.mkdtemp(prefix="bench-shards-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = volume(folder, args.side)
    megabytes = args.side**3 * 2 / 2**20
    variants = {"chunks": "", "shards": f", shards: [{args.shard}, {args.shard}, {args.shard}]"}
    print(f"# {args.side}^3 uint16, 128^3 chunks, Gaussian sigma 2, threads; shards {args.shard}^3")
    print("| output | wall s (median) | cpu s | peak RSS MiB | files | MiB/s written |")
    print("|---|---|---|---|---|---|")
    outputs = {}
    for name, shards in variants.items():
        output = folder / f"out-{name}.zarr"
        config = folder / f"{name}.yaml"
        config.write_text(CONFIG.format(input=source, output=output, shards=shards))
        runs = []
        for _ in range(args.rounds):
            if output.exists():
                shutil.rmtree(output)
            runs.append(measured([sys.executable, "-m", "convflow", "run", str(config), "-q"]))
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        rss = max(r["rss_mib"] for r in runs)
        rate = megabytes / wall
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {rss:.0f} | {files_under(output)} | {rate:.1f} |")
        outputs[name] = output
    first, second = (zarr.open_array(str(path), mode="r") for path in outputs.values())
    for start in range(0, args.side, 128):
        if not np.array_equal(first[start : start + 128], second[start : start + 128]):
            raise SystemExit(f"the sharded output differs from the unsharded one in z {start}..{start + 128}")
    print("values: equal")
    if args.work is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
