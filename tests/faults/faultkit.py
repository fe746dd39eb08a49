"""What the fault-injection tests share: a pipeline onto every output format, runs killed at a moment, and
outputs compared byte for byte.

The pipeline smooths a 64^3 uint16 zarr volume of 16^3 chunks into a zarr
array, an OME-Zarr image with a 3-level pyramid and a TIFF, in one run.  A
run is watched by polling its output folder (no hook in convflow): its first
write is the first change there, lease files aside.

Outputs record absolute paths and the times of their run, so a faulted run
writes where the clean one did (the clean output is read, then removed), and
the comparison blanks the times: every other byte of every file, metadata
included, must be the clean run's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from convflow.io._lease import SUFFIX as LEASE_SUFFIX

SHAPE, CHUNK = (64, 64, 64), 16
OUTPUTS = ("plain.zarr", "image.ome.zarr", "stack.tif")
PIPELINE = """\
input: {path: in.zarr}
kernels:
  smooth: {type: gaussian, sigma: 1.0}
stages:
  - name: smoothed
    steps: [{kernel: smooth, mode: reflect}]
outputs:
  - {stage: smoothed, path: out/plain.zarr, dtype: uint16, chunks: [16, 16, 16]}
  - {stage: smoothed, path: out/image.ome.zarr, dtype: uint16, chunks: [16, 16, 16], pyramid: {levels: 3}}
  - {stage: smoothed, path: out/stack.tif, dtype: uint16, chunks: [1, 16, 16]}
"""
# A provenance time (`_provenance.now`), and the list of a resumed output's resume times.
_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
_RESUMED = re.compile(rb'"resumed": \[[^\]]*\],\s*')


def make_project(folder: Path, seed: int = 15) -> Path:
    """Write the seeded input and the pipeline (p.yaml) into `folder`; return its output folder."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (np.random.default_rng(seed).random(SHAPE) * 60000).astype(np.uint16)
    zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(CHUNK,) * 3)
    (folder / "p.yaml").write_text(PIPELINE)
    return folder / "out"


def launch(folder: Path, *flags: str, scheduler: str = "synchronous") -> subprocess.Popen[str]:
    """Start ``convflow run p.yaml -q`` in `folder` on `scheduler`."""
    return subprocess.Popen(
        [sys.executable, "-m", "convflow", "run", "p.yaml", "-q", "--scheduler", scheduler, *flags],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def writes(out: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `out` but the leases, with its (inode, mtime_ns, size): what a run has written.

    The run renames and removes folders meanwhile: `os.walk` passes over those.
    """
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            if not name.endswith(LEASE_SUFFIX):
                path = Path(folder, name)
                identity = _identity(path)
                if identity is not None:  # else renamed or removed by the run meanwhile
                    found[str(path.relative_to(out))] = identity
    return found


@dataclass
class Run:
    """A watched run: killed or not, its exit code and error, and seconds from its first write to its end.

    `phase` is the seconds from the first change of the file `run_and_kill`
    was given as `after` until the path it was given as `until` was gone
    (0 without them).
    """

    killed: bool
    returncode: int
    stderr: str
    seconds: float
    phase: float = 0.0


def run_and_kill(
    folder: Path,
    out: Path,
    delay: float | None,
    *flags: str,
    scheduler: str = "synchronous",
    after: str = "",
    until: str = "",
    timed: bool = False,
) -> Run:
    """Run the pipeline in `folder` and SIGKILL it `delay` seconds after its first write (None: never).

    The first write is the first change under `out`.  With `after`, the
    delay counts from the first change of the file ``out/after`` instead
    (its creation, or its rewriting by a resume).  A run that ends before
    the moment is not killed.  A run never to be killed is watched only when
    `timed` (for `Run.seconds`).
    """
    before = writes(out)
    process = launch(folder, *flags, scheduler=scheduler)
    first = later = gone = None
    watching = delay is not None or timed
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None:
            now = time.monotonic()
            if watching and first is None and writes(out) != before:  # the one walk, until a change
                first = now
            if after and first is not None and later is None and _identity(out / after) != before.get(after):
                later = now
            if until and later is not None and gone is None and not (out / until).exists():
                gone = now
            start = later if after else first
            if start is not None and delay is not None and now >= start + delay:
                process.send_signal(signal.SIGKILL)
                break
            if now > deadline:
                process.send_signal(signal.SIGKILL)
                raise AssertionError(f"the run did not end in 120 s: convflow run {' '.join(flags)}")
            time.sleep(0.003)
    finally:
        _, err = process.communicate(timeout=60)
    ended = time.monotonic()
    killed = process.returncode == -signal.SIGKILL
    seconds = ended - first if first is not None else 0.0
    phase = (gone if gone is not None else ended) - later if later is not None else 0.0
    return Run(killed, process.returncode, err, seconds, phase)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """A file's (inode, mtime_ns, size), as `writes` gives it, or None if there is none."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def canonical(path: Path) -> bytes:
    """The bytes of `path` with the run's times blanked, and a TIFF's description length with them.

    A resumed output records when it was resumed; a TIFF's description,
    rewritten at the end of the file, is longer by that, and its tag's count
    with it: that count is zeroed.
    """
    data = bytearray(path.read_bytes())
    if path.suffix == ".tif":
        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags["ImageDescription"]
            size = 8 if tif.is_bigtiff else 4
            data[tag.offset + 4 : tag.offset + 4 + size] = bytes(size)
    return _TIME.sub(b"<time>", _RESUMED.sub(b"", bytes(data)))


def output_files(out: Path) -> dict[str, bytes]:
    """Every file under `out`, by relative name, as `canonical` bytes."""
    return {str(p.relative_to(out)): canonical(p) for p in sorted(out.rglob("*")) if p.is_file()}


def differing_bytes(got: dict[str, bytes], expected: dict[str, bytes]) -> int:
    """Bytes that differ between two sets of files: positions, lengths, and whole files missing or extra."""
    total = 0
    for name in got.keys() | expected.keys():
        if name not in got or name not in expected:
            total += max(len(got.get(name, expected.get(name, b""))), 1)
            continue
        a, b = got[name], expected[name]
        shared = min(len(a), len(b))
        total += abs(len(a) - len(b))
        total += int(
            np.count_nonzero(np.frombuffer(a[:shared], np.uint8) != np.frombuffer(b[:shared], np.uint8))
        )
    return total


def first_differences(got: dict[str, bytes], expected: dict[str, bytes], most: int = 5) -> list[str]:
    """The names of the first files that differ, missing or extra, for a failure message."""
    names = sorted(n for n in got.keys() | expected.keys() if got.get(n) != expected.get(n))
    return names[:most]


def clean_run(folder: Path, out: Path, *flags: str, **watch: Any) -> tuple[dict[str, bytes], Run]:
    """Run the pipeline in `folder` uninterrupted; return its output files and the run, and remove them.

    `watch` (`after`, `until`) is passed to `run_and_kill`.
    """
    run = run_and_kill(folder, out, None, *flags, timed=True, **watch)
    assert run.returncode == 0, run.stderr
    files = output_files(out)
    shutil.rmtree(out)
    return files, run
