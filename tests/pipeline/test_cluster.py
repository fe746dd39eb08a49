"""convflow.pipeline._execution on clusters: same bytes, real schedulers, faults, batch jobs (#6)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from convflow import cli
from convflow.config import load_config
from convflow.errors import ConfigError
from convflow.io import _waves
from convflow.pipeline import SchedulerError, _execution, make_plan, resolve_execution, run_plan

distributed = pytest.importorskip("distributed")

VOLUME = """\
input: {{path: in.zarr}}
kernels: {{g: {{type: gaussian, sigma: 2, ndim: 3}}, d: {{type: sobel, axis: x, ndim: 3}}}}
stages:
  - {{name: smooth, steps: [{{kernel: g}}]}}
  - {{name: edges, steps: [{{kernel: d, op: correlate, mode: wrap}}]}}
outputs:
  - {{stage: smooth, path: out/smooth.zarr}}
  - {{stage: edges, path: out/edges.zarr, dtype: int16}}
{execution}"""

BATCH = "execution: {{scheduler: {name}, queue: short, account: proj1, walltime: '01:00:00', cores: 4, \
memory: 8GiB, jobs: 3, job_extra_directives: ['--constraint=haswell']}}"


def volume_config(folder: Path, execution: str = "", shape=(40, 48, 56), chunks=(16, 16, 16)):
    """The two-output 3-D pipeline in `folder` over a seeded random volume."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "in.zarr").exists():
        data = (np.random.default_rng(6).random(shape, dtype=np.float32) * 1000).astype(np.float32)
        zarr.create_array(str(folder / "in.zarr"), data=data, chunks=chunks)
    (folder / "p.yaml").write_text(VOLUME.format(execution=execution))
    return folder / "p.yaml"


def chunk_bytes(folder: Path) -> dict[str, bytes]:
    """Every stored chunk of the outputs under `folder`/out, by relative path (metadata left out)."""
    out = folder / "out"
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in ("zarr.json", ".zarray", ".zattrs", ".zgroup")
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen) -> None:
    """Stop a process we started, by its pid: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The pipeline's output chunks from the threaded scheduler: what every other scheduler must write."""
    folder = tmp_path_factory.mktemp("threads")
    config = load_config(volume_config(folder, "execution: {scheduler: threads}"))
    run_plan(make_plan(config), resolve_execution(config), progress="none")
    return chunk_bytes(folder)


@pytest.fixture(scope="module")
def scheduler_process(tmp_path_factory):
    """A real ``dask scheduler`` and one ``dask worker`` on 127.0.0.1, as subprocesses; stopped by pid."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("scheduler")
    common = {"cwd": folder, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    started = []
    try:
        scheduler = ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port)]
        worker = ["distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nthreads", "2"]
        started.append(subprocess.Popen([sys.executable, "-m", *scheduler, "--no-dashboard"], **common))
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", *worker, "--no-dashboard", "--memory-limit", "1GiB"], **common
            )
        )
        with distributed.Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=30)
        yield address
    finally:
        for process in reversed(started):
            stop(process)


@pytest.mark.distributed
@pytest.mark.parametrize("scheduler", ["processes", "synchronous", "distributed"])
def test_every_local_scheduler_writes_the_same_bytes_as_threads(tmp_path, reference, scheduler):
    execution = {
        "processes": "execution: {scheduler: processes, workers: 2}",
        "synchronous": "execution: {scheduler: synchronous}",
        "distributed": "execution: {scheduler: distributed, workers: 2, threads: 1, memory_limit: 512MiB}",
    }[scheduler]
    config = load_config(volume_config(tmp_path, execution))
    run_plan(make_plan(config), resolve_execution(config), progress="none")
    written = chunk_bytes(tmp_path)
    assert len(written) == len(reference) > 10
    assert written == reference


@pytest.mark.slow
@pytest.mark.distributed
def test_every_scheduler_under_any_blas_threading_writes_the_same_bytes_as_threads(tmp_path, reference):
    # #15: the bytes depended on OpenBLAS's thread count (a threaded run's OpenBLAS uses every core,
    # a distributed worker's one). Real `convflow run` processes, each with its own BLAS threading.
    runs = [
        ("threads", "8", "execution: {scheduler: threads, workers: 3}"),
        ("processes", "4", "execution: {scheduler: processes, workers: 2}"),
        (
            "distributed",
            "2",
            "execution: {scheduler: distributed, workers: 2, threads: 2, memory_limit: 512MiB}",
        ),
    ]
    started = []
    for scheduler, blas, execution in runs:
        folder = tmp_path / f"{scheduler}-{blas}"
        volume_config(folder, execution)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": blas, "OMP_NUM_THREADS": blas, "MKL_NUM_THREADS": blas}
        command = [sys.executable, "-m", "convflow", "run", "p.yaml", "-q"]
        started.append(
            (folder, subprocess.Popen(command, cwd=folder, env=env, stderr=subprocess.PIPE, text=True))
        )
    for folder, process in started:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        assert chunk_bytes(folder) == reference, folder.name


@pytest.mark.distributed
@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_a_run_in_many_waves_writes_the_same_bytes_as_one_wave(tmp_path, reference, monkeypatch, scheduler):
    # One block row per wave: each wave is its own compute, so its keys must not collide with
    # the previous wave's on a distributed scheduler, which remembers them.
    monkeypatch.setattr(_waves, "WAVE_BYTES", 16 * 48 * 56 * 4)
    execution = {
        "threads": "execution: {scheduler: threads}",
        "distributed": "execution: {scheduler: distributed, workers: 2, threads: 1, memory_limit: 512MiB}",
    }[scheduler]
    config = load_config(volume_config(tmp_path, execution))
    assert (
        len(_waves.waves([(a, a, list(np.ndindex(*a.numblocks))) for a in [make_plan(config).image.array]]))
        == 3
    )
    run_plan(make_plan(config), resolve_execution(config), progress="none")
    assert chunk_bytes(tmp_path) == reference


@pytest.mark.distributed
def test_convflow_run_on_a_running_scheduler_writes_the_same_bytes(tmp_path, reference, scheduler_process):
    config = volume_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "convflow.cli", "run", str(config), "--address", scheduler_process],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"computing on the distributed scheduler at {scheduler_process}" in done.stderr
    assert "chunks (100%), " in done.stderr  # progress, as on a local run
    assert chunk_bytes(tmp_path) == reference


@pytest.mark.distributed
def test_progress_of_a_distributed_run_counts_the_schedulers_tasks(tmp_path, scheduler_process):
    config = load_config(volume_config(tmp_path))
    plan = make_plan(config)
    stream = io.StringIO()
    run_plan(plan, resolve_execution(config, address=scheduler_process), progress="log", stream=stream)
    last = stream.getvalue().splitlines()[-1]
    assert " chunks (100%), " in last
    assert ", done in " in last
    done, total = last.split("; ")[-1].split()[0].split("/")  # "...; 120/120 tasks of the waves so far"
    assert int(done) == int(total) >= plan.task_counts()[1] // 2  # the scheduler's tasks, not one per compute


@pytest.mark.slow  # the nanny restarts the killed worker: a fresh process, seconds on 2 cores
@pytest.mark.distributed
def test_a_worker_killed_mid_run_does_not_change_the_output(tmp_path, reference):
    config = load_config(volume_config(tmp_path))
    killed = []
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            memory_limit="1GiB",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        pids = sorted(client.run(os.getpid).values())
        chunks = tmp_path / "out" / "smooth.zarr" / "c"

        def kill_when_writing_starts():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if chunks.exists() and any(chunks.rglob("*")):
                    written = sum(1 for p in chunks.rglob("*") if p.is_file())
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(written)
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_when_writing_starts)
        killer.start()
        plan = make_plan(config)
        run_plan(plan, resolve_execution(config, address=cluster.scheduler_address), progress="none")
        killer.join()
    total = len([k for k in reference if k.startswith("smooth.zarr")])
    assert killed, "no block was written: the worker was never killed"
    assert killed[0] < total  # the worker died while blocks were still being written
    assert chunk_bytes(tmp_path) == reference


@pytest.mark.distributed
def test_an_unreachable_scheduler_is_a_clear_error_in_bounded_time(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_execution, "CONNECT_TIMEOUT", 2.0)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    code = cli.main(["run", str(volume_config(tmp_path)), "--address", address])
    assert code == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert f"cannot reach a dask scheduler at {address} within 2 s" in err
    assert "fix --address" in err
    assert not (tmp_path / "out").exists()  # found before any output was created


def fake_submit(folder: Path, name: str) -> Path:
    """A `name` (sbatch, qsub) that only records that it was called."""
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(
        f"#!/bin/sh\necho called > {folder / (name + '.called')}\necho 'Submitted batch job 1'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@pytest.mark.parametrize(
    ("name", "directives"),
    [
        (
            "slurm",
            ["#SBATCH -p short", "#SBATCH -A proj1", "#SBATCH --cpus-per-task=4", "--constraint=haswell"],
        ),
        ("pbs", ["#PBS -q short", "#PBS -A proj1", "#PBS -l walltime=01:00:00"]),
    ],
)
def test_plan_shows_the_batch_job_script_without_submitting_anything(tmp_path, name, directives):
    pytest.importorskip("dask_jobqueue")
    config = volume_config(tmp_path, BATCH.format(name=name))
    submit = {"slurm": "sbatch", "pbs": "qsub"}[name]
    bin_dir = tmp_path / "bin"
    fake_submit(bin_dir, submit)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "convflow.cli", "plan", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"{name} cluster (dask-jobqueue), 3 jobs of 1 worker x 4 threads, memory 8GiB each" in done.stdout
    assert f"script each of the 3 {submit} jobs runs" in done.stdout
    for directive in directives:
        assert directive in done.stdout
    assert f"distributed.cli.dask_worker {_execution.PLAN_ADDRESS} --name convflow-worker --nthreads 4" in (
        done.stdout
    )
    assert not (bin_dir / f"{submit}.called").exists()


@pytest.mark.parametrize("name", ["slurm", "pbs"])
def test_a_batch_run_without_its_submit_command_exits_2_before_compute(tmp_path, name):
    pytest.importorskip("dask_jobqueue")
    config = volume_config(tmp_path, BATCH.format(name=name))
    submit = {"slurm": "sbatch", "pbs": "qsub"}[name]
    python_bin = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{python_bin}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "convflow.cli", "run", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert (
        f"error: the {name} scheduler submits its workers with {submit}, which is not on PATH" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_batch_job_without_cores_or_memory_is_a_config_error(tmp_path):
    pytest.importorskip("dask_jobqueue")
    config = load_config(volume_config(tmp_path, "execution: {scheduler: slurm, queue: short}"))
    with pytest.raises(ConfigError, match=r"execution\.scheduler: a slurm job needs execution\.cores and"):
        resolve_execution(config)


def test_command_line_address_overrides_a_batch_config(tmp_path):
    pytest.importorskip("dask_jobqueue")
    config = load_config(volume_config(tmp_path, BATCH.format(name="slurm")))
    assert resolve_execution(config).concurrency == 12
    remote = resolve_execution(config, address="tcp://10.0.0.1:8786")
    assert (remote.scheduler, remote.address, remote.job) == ("distributed", "tcp://10.0.0.1:8786", ())
    with pytest.raises(SchedulerError, match=r"--address tcp://10\.0\.0\.1:8786 needs the distributed"):
        resolve_execution(config, scheduler="slurm", address="tcp://10.0.0.1:8786")


FAKE_SBATCH = """#!/bin/sh
# Stands in for SLURM's sbatch: runs the job script here, in the background, and says its job id.
script=$(mktemp); cat "$1" > "$script"
sh "$script" > {folder}/job.log 2>&1 &
echo $! >> {folder}/jobs
echo "Submitted batch job $!"
"""
FAKE_SCANCEL = """#!/bin/sh
for pid in "$@"; do pkill -P "$pid"; kill "$pid"; done 2>/dev/null
exit 0
"""


@pytest.mark.distributed
def test_a_slurm_run_submits_worker_jobs_and_writes_the_same_bytes(tmp_path, reference):
    pytest.importorskip("dask_jobqueue")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH.format(folder=bin_dir)), ("scancel", FAKE_SCANCEL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    batch = "execution: {scheduler: slurm, queue: short, cores: 2, memory: 1GiB, jobs: 1}"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "convflow.cli", "run", str(volume_config(tmp_path, batch))],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:  # the job's shell and its worker, by pid, should scancel have missed them
        for pid in (bin_dir / "jobs").read_text().split() if (bin_dir / "jobs").exists() else []:
            subprocess.run(["pkill", "-P", pid], check=False)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    assert done.returncode == 0, done.stderr
    assert "1 sbatch job(s) submitted" in done.stderr
    assert "chunks (100%), " in done.stderr
    assert "Traceback" not in done.stderr
    assert len((bin_dir / "jobs").read_text().split()) == 1
    assert chunk_bytes(tmp_path) == reference
