"""One writer per output, through the real ``convflow run`` (#15, defect 3).

Two runs onto one output, started close together with different configs,
used to both exit 0 and leave chunks of both.  Now the first to take the
output's lease writes; every other run onto it, ``--overwrite`` and
``--resume`` included, exits 2 naming the holder, and touches nothing.  A
SIGKILLed holder's lease is stale, and ``--resume`` takes it over.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_cli import is_one_error_line, run_all
from test_cli_kill import CHUNK, CHUNKS, SHAPE, SLOW_YAML, chunk_files, start_and_kill

from convflow.io._lease import lease_path

OTHER_YAML = SLOW_YAML.replace("size: 3", "size: 5")


def slow_run(folder: Path, seed: int = 15) -> Path:
    """The slow pipeline of test_cli_kill in `folder` (its run takes seconds); return its output."""
    folder.mkdir(exist_ok=True)
    data = (np.random.default_rng(seed).random(SHAPE) * 60000).astype(np.uint16)
    zarr.create_array(str(folder / "in.zarr"), shape=SHAPE, chunks=(CHUNK,) * 3, dtype=np.uint16)[...] = data
    (folder / "p.yaml").write_text(SLOW_YAML)
    (folder / "other.yaml").write_text(OTHER_YAML)
    return folder / "out" / "smoothed.zarr"


def start(folder: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "convflow", "run", *args, "--scheduler", "synchronous", "-q"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {seconds} s")
        time.sleep(0.01)


def kernel_size(output: Path) -> int:
    record = zarr.open_array(str(output)).attrs["convflow"]
    return record["config"]["kernels"]["smooth"]["size"]


@pytest.mark.slow
def test_a_second_run_onto_a_held_output_exits_2_naming_the_holder_and_touches_nothing(tmp_path):
    output = slow_run(tmp_path)
    lease = Path(lease_path(str(output)))
    first = start(tmp_path, "p.yaml")
    try:
        wait_for(lambda: output.is_dir() and len(chunk_files(output)) >= 8, "chunks stored", first)
        holder = json.loads(lease.read_text())
        assert holder["pid"] == first.pid
        # Paused, the holder is alive however slowly the other runs start on a loaded machine.
        first.send_signal(signal.SIGSTOP)
        before = chunk_files(output)
        try:
            others = run_all(
                [["run", "other.yaml", "--overwrite"], ["run", "p.yaml", "--resume"], ["run", "other.yaml"]],
                tmp_path,
            )
        finally:
            first.send_signal(signal.SIGCONT)
        for other in others:
            assert other.returncode == 2, other.stderr
            assert is_one_error_line(other), other.stderr
            assert f"another run is writing it: convflow run pid {first.pid} on host" in other.stderr
            assert holder["config"] in other.stderr
        # Nothing deleted or rewritten: every chunk the holder had stored is still its own file.
        after = chunk_files(output)
        assert all(after[key] == identity for key, identity in before.items())
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 0, err
    assert len(chunk_files(output)) == CHUNKS
    assert kernel_size(output) == 3  # the holder's config, alone
    assert zarr.open_array(str(output)).attrs["convflow"].get("incomplete") is not True
    assert not lease.exists()


@pytest.mark.slow
def test_two_overwrite_runs_started_together_let_exactly_one_write(tmp_path):
    output = slow_run(tmp_path)
    (done,) = run_all([["run", "p.yaml", "-q"]], tmp_path)  # an output to overwrite
    assert done.returncode == 0, done.stderr
    runs = [start(tmp_path, "p.yaml", "--overwrite"), start(tmp_path, "other.yaml", "--overwrite")]
    results = [(process, *process.communicate(timeout=300)) for process in runs]
    codes = sorted(process.returncode for process, _, _ in results)
    assert codes == [0, 2], [err for _, _, err in results]
    (winner, _, _), (_, _, loser_err) = sorted(results, key=lambda r: r[0].returncode)
    assert f"another run is writing it: convflow run pid {winner.pid}" in loser_err
    assert loser_err.count("\n") == 1
    assert kernel_size(output) == (3 if winner is runs[0] else 5)
    assert len(chunk_files(output)) == CHUNKS
    assert not Path(lease_path(str(output))).exists()


@pytest.mark.slow
def test_resume_takes_over_the_lease_of_a_killed_run_without_a_manual_step(tmp_path):
    killed, clean = slow_run(tmp_path / "killed"), slow_run(tmp_path / "clean")
    lease = Path(lease_path(str(killed)))
    start_and_kill(tmp_path / "killed", killed)
    assert json.loads(lease.read_text())["pid"] > 0  # left behind by the SIGKILL
    resumed, reference = run_all([["run", "p.yaml", "--resume"]], tmp_path / "killed") + run_all(
        [["run", "p.yaml", "-q"]], tmp_path / "clean"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert reference.returncode == 0, reference.stderr
    assert not lease.exists()
    for key in chunk_files(clean):
        assert (killed / key).read_bytes() == (clean / key).read_bytes(), key


def test_resume_onto_a_complete_output_that_a_live_run_holds_names_the_holder(tmp_path):
    # The "nothing to do" of --resume on complete outputs skipped write_outputs, so what a killed run
    # left beside them (here its stale lease) stayed for ever (#15 item 5). A live process of ours
    # holds the output here, stopped by its pid after.
    output = slow_run(tmp_path)
    (done,) = run_all([["run", "p.yaml", "-q"]], tmp_path)
    assert done.returncode == 0, done.stderr
    hold = (
        "import sys, time; from convflow.io import _lease; _lease.take({sys.argv[1]: None}); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(output)])
    try:
        lease = Path(lease_path(str(output)))
        wait_for(lease.exists, "lease taken", holder)
        (resumed,) = run_all([["run", "p.yaml", "--resume"]], tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert resumed.returncode == 2, resumed.stdout
    assert is_one_error_line(resumed), resumed.stderr
    assert f"another run is writing it: convflow run pid {holder.pid} on host" in resumed.stderr
    (again,) = run_all([["run", "p.yaml", "--resume"]], tmp_path)  # the holder is gone: stale, taken over
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert not lease.exists()
