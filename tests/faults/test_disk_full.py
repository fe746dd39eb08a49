"""A really full disk under a run onto zarr, OME-Zarr and TIFF outputs, then room made and ``--resume``
(#15 item 5).

As root the outputs' folder is a small tmpfs, mounted for the test (``mount
-t tmpfs -o size=...``) and grown (``remount``) to free space; each size is
drawn from a seeded RNG within a quarter of what the outputs take, from the
smallest (the outputs cannot even be created) to the last (the TIFF's
assembly).  Elsewhere a file size limit fails writes the way a full disk does
(EFBIG instead of ENOSPC), as tests/io/test_safety.py's full disk does.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from faultkit import differing_bytes, first_differences, make_project, output_files

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("CONVFLOW_FAULT_SEED", "20261203"))
ROOMY = 16 * 2**20


class Disk:
    """The outputs' folder on a disk of a size set by the test: a tmpfs, or a file size limit."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.size = folder, ROOMY
        self.mounted = False
        if os.geteuid() == 0:
            folder.mkdir(exist_ok=True)
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={ROOMY}", "tmpfs", str(folder)])
            self.mounted = done.returncode == 0

    def resize(self, size: int) -> None:
        """Make the disk `size` bytes (a tmpfs keeps what it holds; a smaller size than that fails)."""
        self.size = size
        if self.mounted:
            remount = ["mount", "-o", f"remount,size={size}", str(self.folder)]
            subprocess.run(remount, check=True, capture_output=True)

    def used(self) -> int:
        """Bytes the outputs take on this disk."""
        if self.mounted:
            stat = os.statvfs(self.folder)
            return (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        return max(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def empty(self) -> None:
        """Remove everything on the disk, and make it roomy again."""
        for path in self.folder.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.resize(ROOMY)

    def run(self, folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
        """``convflow run p.yaml -q`` in `folder`, onto this disk."""
        limit = None if self.mounted or self.size == ROOMY else self.size

        def limited() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        command = [sys.executable, "-m", "convflow", "run", "p.yaml", "-q", *flags]
        return subprocess.run(
            command,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=limited if limit else None,
        )

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.folder)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A project in `tmp_path` whose outputs' folder is a `Disk`; unmounted afterwards."""
    make_project(tmp_path)
    disk = Disk(tmp_path / "out")
    try:
        yield disk
    finally:
        disk.unmount()


def test_a_full_disk_fails_the_run_in_one_line_and_resume_finishes_it_byte_identical(tmp_path, disk, tally):
    clean = disk.run(tmp_path)
    assert clean.returncode == 0, clean.stderr
    expected, total = output_files(disk.folder), disk.used()
    disk.empty()
    rng = np.random.default_rng(SEED)
    quarters = [int(total * (q + rng.random()) / 4) for q in range(4)]
    for size in [4096, 12288, *quarters]:  # no room for the leases; for the first output's metadata
        kind = "disk full" + (" (tmpfs)" if disk.mounted else " (file size limit)")
        why = f"seed {SEED}: a disk of {size} bytes of the {total} the outputs take"
        disk.resize(size)
        full = disk.run(tmp_path)
        tally.inject(kind)
        assert full.returncode == 1, f"{why}: exit {full.returncode}: {full.stderr}"
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1, f"{why}: {full.stderr}"
        assert lines[0].startswith("error: the run failed: "), f"{why}: {full.stderr}"
        assert "No space left on device" in lines[0] or "File too large" in lines[0], f"{why}: {lines[0]}"
        assert "--resume" in lines[0]
        disk.resize(ROOMY)
        resumed = disk.run(tmp_path, "--resume")
        assert resumed.returncode == 0, f"{why}: the --resume failed: {resumed.stderr}"
        got = output_files(disk.folder)
        differing = differing_bytes(got, expected)
        tally.differing += differing
        assert differing == 0, f"{why}: {differing} bytes differ, in {first_differences(got, expected)}"
        tally.survive(kind)
        disk.empty()
