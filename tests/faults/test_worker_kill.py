"""A dask worker process SIGKILLed while ``convflow run --address`` computes on it (#15 item 5).

A real ``dask scheduler`` and three ``dask worker --no-nanny`` processes on
127.0.0.1 (a killed worker stays dead); each trial kills one of them at a
seeded moment after the run stored its first block.  The run must finish (or
fail in one line, and ``--resume`` finish), every file byte for byte a
threaded run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import pytest
from faultkit import differing_bytes, first_differences, launch, make_project, output_files
from test_cluster import free_port, stop

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.faults, pytest.mark.distributed]

SEED = int(os.environ.get("CONVFLOW_FAULT_SEED", "20261203"))
WORKERS = 3


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """The scheduler's address and the worker processes; every process stopped by its pid afterwards."""
    address = f"tcp://127.0.0.1:{free_port()}"
    common = {"cwd": tmp_path, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1"]
    started = [
        subprocess.Popen([*scheduler, "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **common)
    ]
    try:
        options = ["--no-nanny", "--nthreads", "1", "--memory-limit", "1GiB", "--no-dashboard"]
        workers = [subprocess.Popen([*worker, *options], **common) for _ in range(WORKERS)]
        started += workers
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(WORKERS, timeout=120)
        yield address, workers
    finally:
        for process in reversed(started):
            stop(process)


def test_a_worker_killed_mid_run_leaves_the_threaded_runs_bytes(tmp_path, cluster, tally):
    address, workers = cluster
    folder = tmp_path / "run"
    out = make_project(folder)
    threaded = launch(folder, scheduler="threads")
    _, err = threaded.communicate(timeout=300)
    assert threaded.returncode == 0, err
    expected = output_files(out)
    shutil.rmtree(out)
    rng = np.random.default_rng(SEED + 7)
    chunks = out / "plain.zarr" / "c"  # there once the first block is stored
    for victim in workers[: WORKERS - 1]:
        for _ in range(4):  # a run that ends before its moment is run again, at another moment
            delay = float(rng.random()) * 0.1
            run = launch(folder, "--address", address, scheduler="distributed")
            first, killed = None, False
            while run.poll() is None:
                now = time.monotonic()
                if first is None and chunks.exists():
                    first = now
                if first is not None and now >= first + delay:
                    victim.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.003)
            _, err = run.communicate(timeout=300)
            why = f"seed {SEED + 7}: worker pid {victim.pid} killed {delay:.2f} s after the first block"
            if killed:
                break
            assert run.returncode == 0, f"{why}: {err}"
            shutil.rmtree(out)
        assert killed, f"{why}: 4 runs ended before their moment"
        victim.wait(timeout=30)
        tally.inject("a distributed worker SIGKILLed")
        if run.returncode != 0:  # it may fail, cleanly; then --resume finishes
            assert err.strip().count("\n") == 0, f"{why}: {err}"
            assert err.startswith("error: "), f"{why}: {err}"
            again = launch(folder, "--resume", "--address", address, scheduler="distributed")
            _, err = again.communicate(timeout=300)
            assert again.returncode == 0, f"{why}: the --resume failed: {err}"
        got = output_files(out)
        differing = differing_bytes(got, expected)
        tally.differing += differing
        assert differing == 0, f"{why}: {differing} bytes differ, in {first_differences(got, expected)}"
        tally.survive("a distributed worker SIGKILLed")
        shutil.rmtree(out)
