"""The lease of an output (io/_lease.py): one writer at a time, stale leases taken over (#15).

Leases of other runs are real files written where a run would write them:
a live process of ours on this host (with its real or a wrong start time),
or a holder on another host whose file is fresh or was last touched long ago.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import dask.array as da
import numpy as np
import pytest
import zarr

from convflow.errors import OutputError, OutputLockedError
from convflow.io import _lease, check_output, write_output
from convflow.io._lease import Holder, lease_path


def holder(**fields) -> Holder:
    mine = _lease._me("0123456789abcdef")
    return Holder(**{**asdict(mine), **fields})


def place(output, who: Holder, age: float = 0.0) -> str:
    """Write `who`'s lease beside `output`, last touched `age` seconds ago."""
    lease = lease_path(str(output))
    with open(lease, "w", encoding="utf-8") as file:
        json.dump(asdict(who), file)
    touched = time.time() - age
    os.utime(lease, (touched, touched))
    return lease


@pytest.fixture
def sleeper():
    """A live process of ours, stopped by its pid afterwards."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def slow(shape=(32, 32), delay=0.02) -> da.Array:
    """A dask array whose blocks take `delay` seconds each."""
    data = da.from_array(np.arange(np.prod(shape), dtype=np.float64).reshape(shape), chunks=8)
    return data.map_blocks(lambda block: (time.sleep(delay), block)[1], dtype=np.float64)


def test_a_live_process_on_this_host_holds_the_output(tmp_path, sleeper):
    output = tmp_path / "a.zarr"
    place(output, holder(pid=sleeper.pid, process_start=_lease._process_start(sleeper.pid)))
    with pytest.raises(
        OutputLockedError, match=f"another run is writing it: convflow run pid {sleeper.pid} on"
    ):
        write_output(np.zeros((4, 4)), output)
    with pytest.raises(OutputLockedError, match="config sha256 0123456789abcdef"):
        check_output(output, np.zeros((4, 4)), overwrite=True)
    assert not output.exists()  # refused before anything was created
    assert os.path.exists(lease_path(str(output)))  # and the holder's lease left alone


def test_a_reused_pid_is_not_the_holder(tmp_path, sleeper):
    # The pid is alive, but started at another time than the holder recorded: the holder is gone.
    output = tmp_path / "a.zarr"
    place(output, holder(pid=sleeper.pid, process_start="1"))
    assert write_output(np.ones((4, 4)), output).status == "written"
    assert not os.path.exists(lease_path(str(output)))


def test_a_dead_process_on_this_host_leaves_a_stale_lease(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    output = tmp_path / "a.zarr"
    place(output, holder(pid=int(finished.stdout), process_start="1"))
    assert write_output(np.ones((4, 4)), output).status == "written"


def test_a_holder_on_another_host_holds_until_its_lease_expires(tmp_path):
    output = tmp_path / "a.zarr"
    elsewhere = holder(host=f"not-{socket.gethostname()}", pid=1, process_start=None, boot_id=None)
    place(output, elsewhere, age=_lease.EXPIRY / 2)
    with pytest.raises(OutputLockedError, match=f"pid 1 on host not-{socket.gethostname()}"):
        write_output(np.ones((4, 4)), output)
    place(output, elsewhere, age=_lease.EXPIRY + 5)  # it stopped renewing: killed, or its host went down
    assert write_output(np.ones((4, 4)), output).status == "written"


def test_a_file_that_is_not_a_lease_is_refused_and_kept(tmp_path):
    output = tmp_path / "a.zarr"
    lease = lease_path(str(output))
    with open(lease, "w") as file:
        file.write("mine")
    with pytest.raises(OutputLockedError, match="is not a convflow lease"):
        write_output(np.ones((4, 4)), output)
    with open(lease) as file:
        assert file.read() == "mine"


def test_a_second_writer_in_this_process_is_refused_while_the_first_writes(tmp_path):
    output = tmp_path / "a.zarr"
    first = threading.Thread(
        target=write_output, args=(slow(), output), kwargs={"compute_kwargs": {"scheduler": "synchronous"}}
    )
    first.start()
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(lease_path(str(output))) and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(OutputLockedError, match=f"convflow run pid {os.getpid()}"):
            write_output(np.zeros((32, 32)), output, overwrite=True)
    finally:
        first.join()
    np.testing.assert_array_equal(zarr.open_array(str(output))[...], slow().compute())
    assert not os.path.exists(lease_path(str(output)))


def test_the_holder_renews_its_lease_while_it_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(_lease, "HEARTBEAT", 0.05)
    output = tmp_path / "a.zarr"
    lease = lease_path(str(output))
    touches = []
    writer = threading.Thread(
        target=write_output,
        args=(slow(delay=0.05), output),
        kwargs={"compute_kwargs": {"scheduler": "synchronous"}},
    )
    writer.start()
    while writer.is_alive():
        if os.path.exists(lease):
            with contextlib.suppress(FileNotFoundError):  # removed as the writer finished
                touches.append(os.stat(lease).st_mtime_ns)
        time.sleep(0.01)
    writer.join()
    assert len(set(touches)) >= 3


def test_a_run_that_lost_its_lease_does_not_mark_the_output_complete(tmp_path):
    output = tmp_path / "a.zarr"
    lease = lease_path(str(output))

    def steal(block):
        if os.path.exists(lease):
            os.remove(lease)
        return block

    array = da.ones((16, 16), chunks=8).map_blocks(steal, dtype=np.float64)
    with pytest.raises(OutputError, match="lost its lease"):
        write_output(array, output, compute_kwargs={"scheduler": "synchronous"})
    assert zarr.open_array(str(output)).attrs["convflow"]["incomplete"] is True


def test_a_failed_run_releases_its_lease(tmp_path):
    output = tmp_path / "a.tif"

    def fail(block):
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        write_output(da.ones((32, 32), chunks=16).map_blocks(fail, dtype=np.float64), output)
    assert not os.path.exists(lease_path(str(output)))
    resumed = write_output(da.ones((32, 32), chunks=16), output, resume=True)
    assert resumed.status == "resumed"


def test_what_a_killed_run_left_between_the_steps_of_a_lease_is_removed_by_the_next_holder(tmp_path, sleeper):
    # A SIGKILL between writing the draft and linking it, or between renaming a stale lease away and
    # removing it, left those files for ever (found by tests/faults, #15 item 5).
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead, here, there = int(finished.stdout), socket.gethostname(), f"not-{socket.gethostname()}"
    output = tmp_path / "a.zarr"
    lease = lease_path(str(output))
    names = {
        "dead draft": f"{lease}.{here}.{dead}.0a.tmp",
        "dead stale": f"{lease}.{here}.{dead}.0b.stale",
        "live draft": f"{lease}.{here}.{sleeper.pid}.0c.tmp",
        "far old": f"{lease}.{there}.1.0d.stale",
        "far fresh": f"{lease}.{there}.1.0e.tmp",
        "not ours": f"{lease}.notes.txt",
        "another output's": f"{tmp_path / 'b.zarr'}{_lease.SUFFIX}.{here}.{dead}.0f.tmp",
    }
    for name in names.values():
        with open(name, "w") as file:
            file.write("{}")
    old = time.time() - _lease.EXPIRY - 5
    os.utime(names["far old"], (old, old))
    assert write_output(np.ones((4, 4)), output).status == "written"
    left = {what for what, name in names.items() if os.path.exists(name)}
    assert left == {"live draft", "far fresh", "not ours", "another output's"}
    assert not os.path.exists(lease)
