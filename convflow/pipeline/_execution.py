"""Running a Plan: the scheduler (dask's threads by default), progress, and every output in one compute.

With no ``execution`` section a run uses dask's threaded scheduler on all
cores: nothing to start, nothing to configure.  ``processes`` and
``synchronous`` are dask's other local schedulers; ``distributed`` starts a
LocalCluster (or, with ``address``, connects to a running scheduler);
``slurm`` and ``pbs`` submit dask workers as batch jobs through dask-jobqueue.
Every scheduler writes the same bytes: blocks are computed by the same code
whichever process runs them, and a block recomputed after a lost worker is
written again with the same content.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from dask.utils import parse_bytes

from convflow.config import SCHEDULERS, Config
from convflow.errors import ConfigError, ConvflowError
from convflow.io import WriteReport, write_outputs
from convflow.pipeline._plan import Plan
from convflow.pipeline._progress import ClusterProgress, TaskProgress, progress_style

# Kept for callers of the first release, which refused these two.
NOT_YET: tuple[str, ...] = ()
# Batch schedulers: the dask-jobqueue cluster class and the command that submits its jobs.
JOBQUEUE = {"slurm": ("SLURMCluster", "sbatch"), "pbs": ("PBSCluster", "qsub")}
_JOB_KEYS = ("queue", "account", "walltime", "cores", "memory", "job_extra_directives")
# Seconds to wait for a running scheduler (--address) before giving up with an error.
CONNECT_TIMEOUT = 10.0
# Stands in for the scheduler's address in the job script `convflow plan` shows.
PLAN_ADDRESS = "tcp://SCHEDULER-ADDRESS:8786"


class SchedulerError(ConvflowError, ValueError):
    """The scheduler asked for cannot be used: not available yet, not installed, or unreachable."""


@dataclass(frozen=True)
class Execution:
    """Where a run computes: the scheduler and how many tasks run at once.

    `workers` counts threads (``threads``), processes (``processes``), dask
    workers (``distributed``) or batch jobs of one worker each (``slurm``,
    ``pbs``); `threads` is the threads of each distributed worker (a job's
    ``cores``).  `job` holds the dask-jobqueue keywords of a batch job.
    """

    scheduler: str
    workers: int
    threads: int = 1
    memory_limit: str | int | None = None
    address: str | None = None
    job: tuple[tuple[str, Any], ...] = ()

    @property
    def concurrency(self) -> int | None:
        """Tasks that run at once, or None when a running scheduler decides."""
        if self.address is not None:
            return None
        return self.workers * self.threads

    @property
    def wave_bytes(self) -> int | None:
        """Output bytes per wave that fit the workers' memory, or None for the default.

        A wave holds its inputs, halos and results at once (about four times
        its output); an eighth of the workers' memory keeps that under the
        60% at which distributed starts spilling to disk.
        """
        limit = self.memory_limit if self.scheduler not in JOBQUEUE else dict(self.job).get("memory")
        if limit in (None, "auto") or self.address is not None:
            return None
        return max(1, self.workers * parse_bytes(limit) // 8)

    def describe(self) -> str:
        """One line: the scheduler and its size."""
        if self.scheduler == "synchronous":
            return "synchronous scheduler (one task at a time, in this process)"
        if self.scheduler in ("threads", "processes"):
            return f"{self.scheduler} scheduler, {self.workers} {self.scheduler}"
        if self.address is not None:
            return f"distributed scheduler at {self.address}"
        limit = f", memory_limit {self.memory_limit} each" if self.memory_limit is not None else ""
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.scheduler in JOBQUEUE:
            options = dict(self.job)
            jobs = f"{self.workers} job{'s' if self.workers > 1 else ''}"
            queue = f", queue {options['queue']}" if options.get("queue") else ""
            submit = JOBQUEUE[self.scheduler][1]
            return (
                f"{self.scheduler} cluster (dask-jobqueue), {jobs} of 1 worker x {threads}, "
                f"memory {options.get('memory', '?')} each{queue}; submitted with {submit}"
            )
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        return f"distributed LocalCluster, {workers} x {threads}{limit}"

    def plan_lines(self) -> list[str]:
        """What ``convflow plan`` adds for a batch cluster: the job script, built without submitting it."""
        if self.scheduler not in JOBQUEUE:
            return []
        script = job_script(self)
        return [
            f"job     script each of the {self.workers} {JOBQUEUE[self.scheduler][1]} jobs runs "
            f"({PLAN_ADDRESS} is the address of the scheduler the run starts):",
            *(f"  {line}".rstrip() for line in script.strip().splitlines()),
        ]


def _cores() -> int:
    counter = getattr(os, "process_cpu_count", None) or os.cpu_count
    return max(1, counter() or 1)


def resolve_execution(
    config: Config, *, scheduler: str | None = None, address: str | None = None
) -> Execution:
    """Return how `config` runs, with the command line's ``--scheduler`` and ``--address`` on top.

    Parameters
    ----------
    config : Config
        Its ``execution`` section: scheduler and the keys that scheduler reads.
    scheduler, address : str, optional
        Overrides from the command line; an address implies ``distributed``.

    Returns
    -------
    Execution

    Raises
    ------
    convflow.errors.ConfigError
        The config's batch job is incomplete (no ``cores`` or ``memory``).
    SchedulerError
        The command line asks for an unknown scheduler, or ``distributed`` or
        ``dask-jobqueue`` is not installed.
    """
    spec = config.execution
    from_cli = scheduler is not None or address is not None
    name = scheduler or ("distributed" if address is not None else spec.scheduler)
    if name not in SCHEDULERS:
        raise SchedulerError(f"--scheduler {name!r} is not a scheduler; use one of {', '.join(SCHEDULERS)}")
    address = address if address is not None else (spec.address if name == spec.scheduler else None)
    if address is not None and name != "distributed":
        raise SchedulerError(
            f"--address {address} needs the distributed scheduler, not {name!r}; drop --scheduler {name}"
        )
    if name == "synchronous":
        return Execution("synchronous", 1)
    # Keys the config gives for another scheduler than the one used do not apply.
    same = name == spec.scheduler
    workers = spec.workers if same and spec.workers is not None else None
    if name in ("threads", "processes"):
        return Execution(name, workers or _cores())
    _check_distributed()
    if address is not None:
        return Execution("distributed", 0, address=address)
    if name in JOBQUEUE:
        return _batch_execution(config, name, same, from_cli)
    threads = spec.threads if same and spec.threads is not None else None
    workers = workers or (1 if threads is None else max(1, _cores() // threads))
    threads = threads or max(1, _cores() // workers)
    return Execution("distributed", workers, threads, spec.memory_limit if same else None)


def _batch_execution(config: Config, name: str, same: bool, from_cli: bool) -> Execution:
    """A slurm or pbs Execution: one dask worker per job, ``cores`` threads, ``memory`` each."""
    spec = config.execution
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError as err:
        raise SchedulerError(
            f"the {name} scheduler needs dask-jobqueue: pip install 'convflow[slurm]' "
            "(or pip install dask-jobqueue)"
        ) from err
    options = {key: getattr(spec, key) for key in _JOB_KEYS if same and getattr(spec, key) is not None}
    if "job_extra_directives" in options:
        options["job_extra_directives"] = list(options["job_extra_directives"])
    execution = Execution(
        name,
        spec.jobs if same and spec.jobs is not None else 1,
        options.get("cores", 1),
        options.get("memory"),
        job=tuple(options.items()),
    )
    try:
        script = job_script(execution)
    except ValueError as err:
        # dask-jobqueue needs cores and memory, from here or from dask's jobqueue config.
        where = "--scheduler" if from_cli and not same else config.where(("execution", "scheduler"))
        raise ConfigError(
            f"{where}: a {name} job needs execution.cores and execution.memory (per job, e.g. "
            f"cores: 8, memory: 16GiB): {str(err).splitlines()[0]}"
        ) from err
    cores = re.search(r"--nthreads (\d+)", script)
    if cores is not None and "cores" not in options:  # taken from dask's jobqueue config
        execution = Execution(name, execution.workers, int(cores.group(1)), None, job=execution.job)
    return execution


def _job_class(scheduler: str) -> Any:
    import dask_jobqueue

    return getattr(dask_jobqueue, JOBQUEUE[scheduler][0])


def job_script(execution: Execution) -> str:
    """The batch script of one worker job, built without starting a scheduler or submitting a job.

    dask-jobqueue's Job class writes the script from the job keywords alone;
    `PLAN_ADDRESS` stands in for the scheduler a run starts.
    """
    job_cls = _job_class(execution.scheduler).job_cls
    job = job_cls(scheduler=PLAN_ADDRESS, name="convflow-worker", processes=1, **dict(execution.job))
    return str(job.job_script())


def _check_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise SchedulerError(
            "the distributed scheduler needs dask.distributed: pip install 'convflow[distributed]'"
        ) from err


def check_submit_command(execution: Execution) -> None:
    """Refuse a slurm or pbs run where its submit command (sbatch, qsub) is not on PATH.

    Raises
    ------
    SchedulerError
        Naming the command and what to do instead.
    """
    if execution.scheduler not in JOBQUEUE:
        return
    command = JOBQUEUE[execution.scheduler][1]
    if shutil.which(command) is None:
        raise SchedulerError(
            f"the {execution.scheduler} scheduler submits its workers with {command}, which is not on "
            f"PATH: run convflow on a {execution.scheduler.upper()} login node (where {command} works), "
            "or use --scheduler distributed here, or --address tcp://host:8786 for a scheduler "
            "started on the cluster"
        )


@contextlib.contextmanager
def scheduler(execution: Execution) -> Iterator[dict[str, Any]]:
    """Start what `execution` needs and yield the keyword arguments for ``dask.compute``.

    Raises
    ------
    SchedulerError
        Before anything is computed: the running scheduler cannot be reached
        within `CONNECT_TIMEOUT`, or a batch scheduler's submit command is missing.
    """
    if execution.scheduler == "synchronous":
        yield {"scheduler": "synchronous"}
        return
    if execution.scheduler in ("threads", "processes"):
        yield {"scheduler": execution.scheduler, "num_workers": execution.workers}
        return
    from distributed import Client, LocalCluster

    if execution.address is not None:
        try:
            client = Client(execution.address, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise SchedulerError(
                f"cannot reach a dask scheduler at {execution.address} within {CONNECT_TIMEOUT:g} s "
                f"({err}); start one there (dask scheduler, with dask worker processes pointing at it), "
                "or fix --address / execution.address"
            ) from err
        with client:
            yield {"scheduler": client}
        return
    if execution.scheduler in JOBQUEUE:
        check_submit_command(execution)
        cluster_cls = _job_class(execution.scheduler)
        with cluster_cls(processes=1, **dict(execution.job)) as batch:
            batch.scale(jobs=execution.workers)
            with Client(batch, set_as_default=False) as client:
                yield {"scheduler": client}
        return
    cluster = LocalCluster(
        n_workers=execution.workers,
        threads_per_worker=execution.threads,
        memory_limit=execution.memory_limit if execution.memory_limit is not None else "auto",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # a free port: two runs at once must not collide
    )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield {"scheduler": client}


def _workers_wave_bytes(client: Any) -> int | None:
    """An eighth of the connected workers' memory limits (see `Execution.wave_bytes`), if known."""
    if not hasattr(client, "scheduler_info"):
        return None
    workers = client.scheduler_info().get("workers", {}).values()
    total = sum(int(w.get("memory_limit") or 0) for w in workers)
    return total // 8 or None


def _announce(execution: Execution, client: Any, stream: IO[str]) -> None:
    """Say where the run computes, with the dashboard's link when the scheduler serves one."""
    print(f"convflow: computing on the {execution.describe()}", file=stream)
    if execution.scheduler in JOBQUEUE:
        print(
            f"convflow: {execution.workers} {JOBQUEUE[execution.scheduler][1]} job(s) submitted; "
            "tasks start when the jobs do",
            file=stream,
        )
    with contextlib.suppress(Exception):  # a link is a courtesy, never a reason to fail
        if "dashboard" in client.scheduler_info().get("services", {}):
            print(f"convflow: dashboard at {client.dashboard_link}", file=stream)
    stream.flush()


def run_plan(
    plan: Plan,
    execution: Execution,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: str = "auto",
    stream: IO[str] | None = None,
) -> list[WriteReport]:
    """Compute every output of `plan` together and write it.

    Parameters
    ----------
    plan : Plan
        From `make_plan` (with the same `overwrite` and `resume`).
    execution : Execution
        From `resolve_execution`.
    overwrite, resume : bool, default False
        ``--overwrite`` and ``--resume``.
    progress : {'auto', 'bar', 'log', 'none'}
        ``auto``: a bar when `stream` is a terminal, else a line every
        `LOG_INTERVAL` seconds.  Both count the chunks written of all the
        run's chunks (those a resume finds stored count as done), with their
        rate and the time left; the line also counts the scheduler's tasks
        so far.  Distributed runs print the dashboard's link.
    stream : file, optional
        Where progress goes (default: stderr).

    Returns
    -------
    list of WriteReport
        One per output file, in the plan's order.

    Raises
    ------
    SchedulerError
        Before any compute: the scheduler cannot be started or reached.
    """
    stream = stream if stream is not None else sys.stderr
    style = progress_style(progress, stream)
    jobs = [(target.array, target.path, target.options) for target in plan.outputs]
    with scheduler(execution) as compute_kwargs:
        wave_bytes = _workers_wave_bytes(compute_kwargs.get("scheduler")) or execution.wave_bytes
        if style == "none":
            return write_outputs(
                jobs, overwrite=overwrite, resume=resume, compute_kwargs=compute_kwargs, wave_bytes=wave_bytes
            )
        tracker: Any
        if execution.scheduler in ("threads", "processes", "synchronous"):
            tracker = TaskProgress(style, stream)
        else:
            _announce(execution, compute_kwargs["scheduler"], stream)
            tracker = ClusterProgress(compute_kwargs["scheduler"], style, stream)
        finished = False
        try:
            with tracker:
                reports = write_outputs(
                    jobs,
                    overwrite=overwrite,
                    resume=resume,
                    compute_kwargs=compute_kwargs,
                    wave_bytes=wave_bytes,
                    progress=tracker.chunks,
                )
            finished = True
        finally:
            tracker.close(finished)
        return reports
