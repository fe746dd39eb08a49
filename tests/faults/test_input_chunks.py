"""An input chunk deleted, truncated, or decoding short while ``convflow run`` reads the input (#15 item 5).

Each run fails with exit 1 and one ``error:`` line naming the chunk file,
the output is left incomplete, and once the chunk is restored ``--resume``
finishes it byte for byte as an uninterrupted run.  A deleted chunk is the
hard case: zarr reads a missing chunk as the fill value; convflow tells it
from a chunk that was never there by its folder's time (io/_chunks.py).

The run is paused (SIGSTOP) once it holds its output's lease, after it opened
the input and before it computes, the chunk is damaged, and the run goes on.
The pipeline is test_cli_kill's: 512 chunks on the synchronous scheduler.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from faultkit import differing_bytes, first_differences, output_files
from test_cli_kill import CHUNK, SHAPE, chunk_files
from test_cli_lease import slow_run, start, wait_for

from convflow.io._lease import lease_path

pytestmark = pytest.mark.faults


def delete(path: Path, good: bytes) -> None:
    path.unlink()


def truncate(path: Path, good: bytes) -> None:
    path.write_bytes(good[: len(good) // 2])


def decode_short(path: Path, good: bytes) -> None:
    # A valid zstd frame of half the chunk's values: zarr-python itself refuses it.
    raw = numcodecs.Zstd().decode(good)
    path.write_bytes(numcodecs.Zstd().encode(bytes(raw)[: len(raw) // 2]))


DAMAGES = [delete, truncate, decode_short]  # in the order of the runs: the run, then two resumes


def target(output: Path) -> tuple[int, ...]:
    """The input chunk to damage: one whose output block the run must still compute.

    The first run is hit in the middle of the volume; a resume, at the last
    block not yet stored.
    """
    stored = {tuple(int(i) for i in key.split("/")[1:]) for key in chunk_files(output)}
    missing = [coords for coords in np.ndindex(*(n // CHUNK for n in SHAPE)) if coords not in stored]
    assert missing, "the output is complete: nothing left to damage"
    return tuple(n // CHUNK // 2 for n in SHAPE) if not stored else missing[-1]


def test_a_chunk_damaged_mid_run_stops_the_run_naming_it_and_resume_finishes(tmp_path, tally):
    output = slow_run(tmp_path)
    out = output.parent
    clean = start(tmp_path, "p.yaml")
    _, err = clean.communicate(timeout=300)
    assert clean.returncode == 0, err
    expected = output_files(out)
    shutil.rmtree(out)
    flags: tuple[str, ...] = ()
    kinds: list[str] = []
    for damage in DAMAGES:
        kind = f"input chunk {damage.__name__.replace('_', ' ')} mid-run"
        run = start(tmp_path, "p.yaml", *flags)
        try:
            wait_for(lambda: Path(lease_path(str(output))).exists(), "lease taken", run)
            run.send_signal(signal.SIGSTOP)
            coords = target(output)
            chunk = tmp_path / "in.zarr" / "c" / "/".join(map(str, coords))
            good = chunk.read_bytes()
            damage(chunk, good)
            tally.inject(kind)
        finally:
            run.send_signal(signal.SIGCONT)
        _, err = run.communicate(timeout=300)
        assert run.returncode == 1, f"{kind}: exit {run.returncode}: {err}"
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("error: the run failed: "), err
        assert f"{chunk}: chunk {coords} of this array is" in lines[0], err
        assert zarr.open_array(str(output)).attrs["convflow"]["incomplete"] is True
        chunk.write_bytes(good)  # repaired
        flags = ("--resume",)
        kinds.append(kind)  # stopped as it must: survived once the output resumes to the clean bytes
    done = start(tmp_path, "p.yaml", "--resume")
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    got = output_files(out)
    differing = differing_bytes(got, expected)
    tally.differing += differing
    assert differing == 0, f"{differing} bytes differ, in {first_differences(got, expected)}"
    for kind in kinds:
        tally.survive(kind)
