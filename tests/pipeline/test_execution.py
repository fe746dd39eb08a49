"""Tests for convflow.pipeline._execution: schedulers, progress, and all outputs of a run in one compute."""

from __future__ import annotations

import io
import itertools
import os
import threading
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr

from convflow.config import load_config
from convflow.errors import ConfigError
from convflow.io import write_outputs
from convflow.pipeline import make_plan, resolve_execution, run_plan
from convflow.pipeline._progress import TaskProgress, progress_style

PIPELINE = """\
input: {{path: in.zarr}}
kernels: {{k: {{type: box}}, d: {{type: sobel, axis: y}}}}
stages:
  - {{name: s, steps: [{{kernel: k}}]}}
  - {{name: e, steps: [{{kernel: d, mode: wrap}}]}}
outputs:
  - {{stage: s, path: out/s.zarr}}
  - {{stage: e, path: out/e.zarr, dtype: int16}}
{execution}"""


def config_with(folder: Path, execution: str = "", data: np.ndarray | None = None):
    """The two-stage pipeline in `folder` with an execution section, over a small zarr input."""
    if not (folder / "in.zarr").exists():
        data = np.arange(18 * 21, dtype=np.uint16).reshape(18, 21) % 97 if data is None else data
        zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(6, 7))
    (folder / "p.yaml").write_text(PIPELINE.format(execution=execution))
    return load_config(folder / "p.yaml")


def test_no_execution_section_means_threads_on_every_core(tmp_path):
    execution = resolve_execution(config_with(tmp_path))
    cores = (getattr(os, "process_cpu_count", None) or os.cpu_count)()
    assert (execution.scheduler, execution.workers, execution.concurrency) == ("threads", cores, cores)


def test_config_and_command_line_choose_the_scheduler(tmp_path):
    config = config_with(tmp_path, "execution: {scheduler: processes, workers: 3}")
    assert resolve_execution(config).describe() == "processes scheduler, 3 processes"
    # --scheduler wins; the workers key belongs to processes, so threads falls back to every core.
    cores = (getattr(os, "process_cpu_count", None) or os.cpu_count)()
    assert resolve_execution(config, scheduler="threads").workers == cores
    assert resolve_execution(config, scheduler="synchronous").concurrency == 1
    remote = resolve_execution(config, address="tcp://127.0.0.1:8786")
    assert (remote.scheduler, remote.address, remote.concurrency) == (
        "distributed",
        "tcp://127.0.0.1:8786",
        None,
    )
    local = resolve_execution(
        config_with(
            tmp_path, "execution: {scheduler: distributed, workers: 2, threads: 1, memory_limit: 1GiB}"
        )
    )
    assert local.describe() == "distributed LocalCluster, 2 workers x 1 thread, memory_limit 1GiB each"


def test_slurm_and_pbs_resolve_to_batch_jobs_of_one_worker(tmp_path):
    pytest.importorskip("dask_jobqueue")
    config = config_with(
        tmp_path, "execution: {scheduler: pbs, queue: short, cores: 4, memory: 8GiB, jobs: 2}"
    )
    execution = resolve_execution(config)
    assert (execution.scheduler, execution.workers, execution.threads, execution.concurrency) == (
        "pbs",
        2,
        4,
        8,
    )
    assert execution.describe().endswith("memory 8GiB each, queue short; submitted with qsub")
    assert "#PBS -q short" in "\n".join(execution.plan_lines())


def test_a_batch_job_missing_cores_is_refused_naming_the_key(tmp_path):
    pytest.importorskip("dask_jobqueue")
    config = config_with(tmp_path, "execution: {scheduler: slurm, queue: short}")
    with pytest.raises(
        ConfigError, match=r"line 9, execution\.scheduler: a slurm job needs execution\.cores"
    ):
        resolve_execution(config)


def test_progress_counts_finished_tasks_as_a_bar_or_as_log_lines():
    x = da.ones((8, 8), chunks=4) + 1
    log = io.StringIO()
    tracker = TaskProgress("log", log, interval=0.0)
    with tracker:
        x.sum().compute(scheduler="threads")
        x.compute(scheduler="synchronous")  # a second compute adds its tasks to the total
    tracker.close(finished=True)
    lines = log.getvalue().splitlines()
    assert lines[-1].startswith(f"convflow: {tracker.total}/{tracker.total} tasks (100%), done in")
    assert tracker.done == tracker.total > 4

    bar = io.StringIO()
    tracker = TaskProgress("bar", bar)
    with tracker:
        x.compute(scheduler="threads")
    tracker.close(finished=True)
    assert f"{tracker.total}/{tracker.total}" in bar.getvalue()


def test_outputs_sharing_a_stage_compute_it_once(tmp_path):
    calls = []
    lock = threading.Lock()

    def counted(block):
        with lock:
            calls.append(block.shape)
        return block * 2

    shared = da.arange(48.0, chunks=8).map_blocks(counted, meta=np.array((), dtype=float))
    jobs = [
        (shared, tmp_path / "a.zarr", {}),
        (shared + 1, tmp_path / "b.zarr", {"chunks": 16}),
        (abs(shared), tmp_path / "c.zarr", {"dtype": "uint8"}),
    ]
    reports = write_outputs(jobs, compute_kwargs={"scheduler": "threads"})
    assert [r.status for r in reports] == ["written"] * 3
    assert len(calls) == 6  # one call per block of the shared stage, not one per output
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "b.zarr"))[:], np.arange(48.0) * 2 + 1)


def test_run_plan_writes_what_the_plan_computes(tmp_path):
    config = config_with(tmp_path, "execution: {scheduler: synchronous}")
    plan = make_plan(config)
    expected = {name: plan.arrays[name].compute(scheduler="synchronous") for name in ("s", "e")}
    stream = io.StringIO()
    reports = run_plan(plan, resolve_execution(config), progress="log", stream=stream)
    assert [r.status for r in reports] == ["written", "written"]
    assert "chunks (100%), " in stream.getvalue()
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out" / "s.zarr"))[:], expected["s"])
    stored = zarr.open_array(str(tmp_path / "out" / "e.zarr"))[:]
    np.testing.assert_array_equal(stored, np.clip(np.rint(expected["e"]), -(2**15), 2**15 - 1))


@pytest.mark.distributed
def test_run_plan_on_a_running_scheduler_at_127_0_0_1(tmp_path):
    distributed = pytest.importorskip("distributed")
    config = config_with(tmp_path)
    plan = make_plan(config)
    expected = plan.arrays["s"].compute(scheduler="synchronous")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port: 8787 may be taken
    ) as cluster:
        execution = resolve_execution(config, address=cluster.scheduler_address)
        reports = run_plan(plan, execution, progress="none")
    assert [r.status for r in reports] == ["written", "written"]
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out" / "s.zarr"))[:], expected)


@pytest.mark.distributed
def test_run_plan_starts_a_local_cluster_from_the_execution_section(tmp_path):
    pytest.importorskip("distributed")
    config = config_with(
        tmp_path, "execution: {scheduler: distributed, workers: 1, threads: 2, memory_limit: 1GiB}"
    )
    plan = make_plan(config)
    expected = plan.arrays["e"].compute(scheduler="synchronous")
    reports = run_plan(plan, resolve_execution(config), progress="none")
    assert [r.status for r in reports] == ["written", "written"]
    stored = zarr.open_array(str(tmp_path / "out" / "e.zarr"))[:]
    np.testing.assert_array_equal(stored, np.clip(np.rint(expected), -(2**15), 2**15 - 1))


# ---- progress of the whole run in chunks (#12) --------------------------------------------------


def test_progress_lines_count_the_chunks_of_the_whole_run_with_rate_and_time_left(tmp_path):
    config = config_with(tmp_path, "execution: {scheduler: synchronous}")
    plan = make_plan(config)
    stream = io.StringIO()
    reports = run_plan(plan, resolve_execution(config), progress="log", stream=stream)
    tracker_lines = stream.getvalue().splitlines()
    total = sum(r.blocks_total for r in reports)
    assert tracker_lines[-1].startswith(f"convflow: {total}/{total} chunks (100%), ")
    assert "chunks/s" in tracker_lines[-1]
    assert sum("done in" in line for line in tracker_lines) == 1


def test_a_resumed_run_counts_the_chunks_already_written_as_done(tmp_path):
    config = config_with(tmp_path, "execution: {scheduler: synchronous}")
    run_plan(make_plan(config), resolve_execution(config), progress="none")
    out = tmp_path / "out" / "s.zarr"
    chunk = next(p for p in out.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()  # one chunk lost; its output marked incomplete again, as a killed run leaves it
    array = zarr.open_array(str(out), mode="r+")
    array.attrs["convflow"] = {**array.attrs["convflow"], "incomplete": True}
    seen, found = [], []
    tracker = TaskProgress("log", io.StringIO(), interval=0.0)
    tracker.chunks = lambda done, total, stored: seen.append((done, total)) or found.append(stored)  # type: ignore[method-assign]
    plan = make_plan(config, resume=True)
    jobs = [(t.array, t.path, t.options) for t in plan.outputs]
    reports = write_outputs(
        jobs, resume=True, compute_kwargs={"scheduler": "synchronous"}, progress=tracker.chunks
    )
    written = sum(r.blocks_written for r in reports)
    total = sum(r.blocks_total for r in reports if r.status != "complete")
    assert written == 1
    assert seen[-1] == (total, total)
    assert seen[0][0] >= 1  # the stored chunks, counted before the missing one is written
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))
    assert found[-1] == total - written  # the chunks found stored, which the rate leaves out


def test_the_last_line_of_a_one_wave_run_has_the_rate_of_its_chunks(tmp_path):
    # The rate used to count from the end of the first wave: a one-wave run read "0.0 chunks/s".
    config = config_with(tmp_path, "execution: {scheduler: synchronous}")
    stream = io.StringIO()
    reports = run_plan(make_plan(config), resolve_execution(config), progress="log", stream=stream)
    total = sum(r.blocks_total for r in reports)
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith(f"convflow: {total}/{total} chunks (100%), ")
    rate = float(last.split(" chunks (100%), ")[1].split(" chunks/s")[0])
    assert rate > 0


def test_the_rate_leaves_out_the_chunks_a_resume_found_written():
    tracker = TaskProgress("log", io.StringIO(), interval=0.0)
    tracker.chunks(0, 10, 0)
    tracker.chunks(6, 10, 6)  # six found stored, none written yet: no rate, no time left
    assert tracker._chunk_text() == "6/10 chunks (60%), 0.0 chunks/s"
    tracker.chunks(10, 10, 6)
    rate = float(tracker._chunk_text().split("(100%), ")[1].split(" chunks/s")[0])
    assert rate > 0


def test_a_terminal_of_no_columns_gets_log_lines(tmp_path):
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))  # as `script` reports
    with os.fdopen(follower, "w") as stream:
        assert progress_style("auto", stream) == "log"
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        assert progress_style("auto", stream) == "bar"
    os.close(leader)
