"""A real ``convflow run`` killed with SIGKILL mid-run, then finished with ``--resume`` (#5).

The run is made slow and its progress observable without any hook in
convflow: a volume of 512 tiny chunks, computed one block at a time on the
synchronous scheduler, each block stored as one chunk file.  The test polls
the output folder and kills the process once some, but far from all, chunk
files exist.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_cli import is_one_error_line, run_all

SHAPE, CHUNK = (32, 32, 32), 4
CHUNKS = (SHAPE[0] // CHUNK) ** 3
# Kill once this many chunks are stored: about 6% of the run (each block takes milliseconds).
KILL_AFTER = 32

SLOW_YAML = f"""\
input: {{path: in.zarr}}
kernels:
  smooth: {{type: box, size: 3}}
stages:
  - name: smoothed
    steps: [{{kernel: smooth, mode: reflect}}]
outputs:
  - {{stage: smoothed, path: out/smoothed.zarr, dtype: uint16, chunks: [{CHUNK}, {CHUNK}, {CHUNK}]}}
"""


def chunk_files(array: Path) -> dict[str, tuple[int, int]]:
    """Every stored chunk file under the zarr array `array`, with its (inode, mtime_ns).

    zarr stores a chunk by renaming a finished temporary file into place, so
    a chunk written again gets a new inode even within one mtime tick.
    """
    files = {}
    for folder, _, names in os.walk(array / "c"):
        for name in names:
            if not name.endswith(".partial"):
                path = Path(folder, name)
                stat = path.stat()
                files[path.relative_to(array).as_posix()] = (stat.st_ino, stat.st_mtime_ns)
    return files


def start_and_kill(cwd: Path, output: Path, kill_after: int = KILL_AFTER) -> dict[str, tuple[int, int]]:
    """Start ``convflow run`` and SIGKILL it once `kill_after` chunks exist in the zarr array `output`.

    Returns the chunks stored then (`chunk_files`).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "convflow", "run", "p.yaml", "--scheduler", "synchronous", "-q"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the run ended (exit {process.returncode}) before it could be killed")
            if output.is_dir() and len(chunk_files(output)) >= kill_after:
                break
            time.sleep(0.005)
        else:
            pytest.fail(f"fewer than {kill_after} chunks stored after 120 s")
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    return chunk_files(output)


@pytest.mark.slow
def test_run_killed_mid_run_resumes_computing_only_missing_chunks_to_the_clean_bytes(tmp_path, rng):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    data = (rng.random(SHAPE) * 60000).astype(np.uint16)
    for folder in (killed, clean):
        folder.mkdir()
        source = zarr.create_array(str(folder / "in.zarr"), shape=SHAPE, chunks=(CHUNK,) * 3, dtype=np.uint16)
        source[...] = data
        (folder / "p.yaml").write_text(SLOW_YAML)
    output = killed / "out" / "smoothed.zarr"

    before = start_and_kill(killed, output)
    assert KILL_AFTER <= len(before) < CHUNKS
    assert zarr.open_array(str(output)).attrs["convflow"]["incomplete"] is True

    (plain,) = run_all([["run", "p.yaml"]], killed)
    (reference,) = run_all([["run", "p.yaml", "-q"]], clean)
    assert plain.returncode == 2
    assert is_one_error_line(plain), plain.stderr
    assert "--resume" in plain.stderr
    assert "--overwrite" in plain.stderr
    assert reference.returncode == 0, reference.stderr
    assert chunk_files(output) == before  # the refused run touched nothing

    (resumed,) = run_all([["run", "p.yaml", "--resume"]], killed)
    assert resumed.returncode == 0, resumed.stderr
    after = chunk_files(output)
    recomputed = {key for key, identity in after.items() if before.get(key) != identity}
    # Exactly the missing chunks were computed and written; none that the killed run stored.
    assert recomputed == set(after) - set(before)
    assert len(after) == CHUNKS
    assert f"({len(recomputed)}/{CHUNKS} blocks)" in resumed.stdout
    assert zarr.open_array(str(output)).attrs["convflow"].get("incomplete") is not True
    # Whatever the killed writers left in the scratch folder beside the output is gone (#12).
    assert sorted(p.name for p in output.parent.iterdir()) == ["smoothed.zarr"]
    assert not list(output.rglob("*.partial"))

    expected = clean / "out" / "smoothed.zarr"
    assert set(chunk_files(expected)) == set(after)
    for key in after:
        assert (output / key).read_bytes() == (expected / key).read_bytes(), key
    np.testing.assert_array_equal(zarr.open_array(str(output))[...], zarr.open_array(str(expected))[...])

    (again,) = run_all([["run", "p.yaml", "--resume"]], killed)
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert chunk_files(output) == after
