"""SIGKILLs at seeded random moments of real ``convflow run``s onto zarr, OME-Zarr (pyramid) and TIFF
outputs, also of the ``--resume`` runs after them and of a TIFF's final assembly; each output then
finished by ``--resume`` must be byte for byte the uninterrupted run's (#15 item 5).

A moment is drawn between the run's first write and its end, as long as a
clean run took from one to the other; the kills of one trial come in a row
(the run, then its resumes), and a last ``--resume`` finishes it.  Set
CONVFLOW_FAULT_SEED to replay other moments; the seed is in every failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from faultkit import (
    clean_run,
    differing_bytes,
    first_differences,
    make_project,
    output_files,
    run_and_kill,
)

from convflow.io._tiff import staging_path

pytestmark = pytest.mark.faults

SEED = int(os.environ.get("CONVFLOW_FAULT_SEED", "20261203"))
KILLS = 16  # at random moments of the runs and their resumes
ASSEMBLY_KILLS = 4  # while the TIFF is written from its staging array
ASSEMBLY = "SIGKILL during a TIFF's assembly"


def kind_of(out: Path, flags: tuple[str, ...]) -> str:
    """What a kill interrupted, from what it left: a TIFF being assembled, a resume, or a run."""
    tiff = out / "stack.tif"
    if tiff.exists() and Path(staging_path(str(tiff))).exists():
        return ASSEMBLY
    return "SIGKILL during --resume" if flags else "SIGKILL during a run"


def finish_and_compare(clean: Clean, tally, kinds: list[str], why: str) -> None:
    """Finish the output with ``--resume``; the trial's kills survived if every byte is the clean run's."""
    done = run_and_kill(clean.folder, clean.out, None, "--resume")
    try:
        assert done.returncode == 0, f"{why}: the last --resume failed: {done.stderr}"
        got = output_files(clean.out)
    finally:
        shutil.rmtree(clean.out, ignore_errors=True)  # the next trial starts from nothing
    differing = differing_bytes(got, clean.expected)
    tally.differing += differing
    assert differing == 0, f"{why}: {differing} bytes differ, in {first_differences(got, clean.expected)}"
    for kind in kinds:
        tally.survive(kind)


@dataclass
class Clean:
    """The folder the runs share, its output folder, the clean run's files, and how long its phases took."""

    folder: Path
    out: Path
    expected: dict[str, bytes]
    window: float  # from the first write to the end
    assembly: float  # from the TIFF's first byte until its staging array is gone


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Clean:
    folder = tmp_path_factory.mktemp("kills")
    out = make_project(folder)
    staging = Path(staging_path("stack.tif")).name
    expected, run = clean_run(folder, out, after="stack.tif", until=staging)
    return Clean(folder, out, expected, run.seconds, run.phase)


def test_runs_killed_at_random_moments_resume_to_the_clean_bytes(clean, tally):
    rng = np.random.default_rng(SEED)
    kills, resumed, trial = 0, 0, 0
    while kills < KILLS:
        trial += 1
        scheduler = ("synchronous", "threads")[trial % 2]
        flags: tuple[str, ...] = ()
        kinds: list[str] = []
        left = clean.window
        for _ in range(int(rng.integers(2, 5))):  # kills in a row: the run, then its resumes
            delay = float(rng.random()) * left
            run = run_and_kill(clean.folder, clean.out, delay, *flags, scheduler=scheduler)
            if not run.killed:
                assert run.returncode == 0, run.stderr
                break
            kinds.append(kind_of(clean.out, flags))
            tally.inject(kinds[-1])
            kills, resumed = kills + 1, resumed + bool(flags)
            flags, left = ("--resume",), max(left - delay, 0.05)
        why = f"seed {SEED}, trial {trial} ({scheduler}), kills {kinds}"
        finish_and_compare(clean, tally, kinds, why)
    assert resumed >= 3, f"seed {SEED}: only {resumed} kills hit a --resume"


def test_runs_killed_while_assembling_the_tiff_resume_to_the_clean_bytes(clean, tally):
    rng = np.random.default_rng(SEED + 1)
    kills, trial = 0, 0
    while kills < ASSEMBLY_KILLS:
        trial += 1
        flags: tuple[str, ...] = ()
        kinds: list[str] = []
        for _ in range(2):  # the run while it assembles, then its resume while it assembles again
            delay = float(rng.random()) * clean.assembly
            run = run_and_kill(clean.folder, clean.out, delay, *flags, after="stack.tif")
            if not run.killed:
                assert run.returncode == 0, run.stderr
                break
            kinds.append(kind_of(clean.out, flags))
            tally.inject(kinds[-1])
            kills += kinds[-1] == ASSEMBLY
            flags = ("--resume",)
        assert trial < 3 * ASSEMBLY_KILLS, (
            f"seed {SEED + 1}: {kills} kills in {trial} trials hit the assembly"
        )
        finish_and_compare(clean, tally, kinds, f"seed {SEED + 1}, trial {trial}, kills {kinds}")
