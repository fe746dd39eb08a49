"""Running a Plan: the scheduler (dask's threads by default), progress, and every output in one compute.

With no ``execution`` section a run uses dask's threaded scheduler on all
cores: nothing to start, nothing to configure.  ``processes`` and
``synchronous`` are dask's other local schedulers; ``distributed`` starts a
LocalCluster (or, with ``address``, connects to a running scheduler).
``slurm`` and ``pbs`` are refused before anything runs until they exist.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from dask.callbacks import Callback

from convflow._config import Config
from convflow._plan import Plan
from convflow.errors import ConfigError, ConvflowError
from convflow.io import WriteReport
from convflow.io._batch import write_outputs

SCHEDULERS = ("threads", "processes", "synchronous", "distributed")
# Accepted by the config schema, refused here until their clusters exist.
NOT_YET = ("slurm", "pbs")
PROGRESS = ("auto", "bar", "log", "none")
# Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL = 10.0


class SchedulerError(ConvflowError, ValueError):
    """The scheduler asked for cannot be used: not available yet, not installed, or unreachable."""


@dataclass(frozen=True)
class Execution:
    """Where a run computes: the scheduler and how many tasks run at once.

    `workers` counts threads (``threads``), processes (``processes``) or
    dask workers (``distributed``); `threads` is the threads of each
    distributed worker.
    """

    scheduler: str
    workers: int
    threads: int = 1
    memory_limit: str | int | None = None
    address: str | None = None

    @property
    def concurrency(self) -> int | None:
        """Tasks that run at once, or None when a running scheduler decides."""
        if self.address is not None:
            return None
        return self.workers * self.threads

    def describe(self) -> str:
        """One line: the scheduler and its size."""
        if self.scheduler == "synchronous":
            return "synchronous scheduler (one task at a time, in this process)"
        if self.scheduler in ("threads", "processes"):
            return f"{self.scheduler} scheduler, {self.workers} {self.scheduler}"
        if self.address is not None:
            return f"distributed scheduler at {self.address}"
        limit = f", memory_limit {self.memory_limit} each" if self.memory_limit is not None else ""
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        threads = f"{self.threads} thread{'s' if self.threads > 1 else ''}"
        return f"distributed LocalCluster, {workers} x {threads}{limit}"


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
        The config asks for a scheduler that is not available yet.
    SchedulerError
        The command line asks for one, or ``distributed`` is not installed.
    """
    spec = config.execution
    from_cli = scheduler is not None or address is not None
    name = scheduler or ("distributed" if address is not None else spec.scheduler)
    where = "--scheduler" if from_cli else config.where(("execution", "scheduler"))
    if name in NOT_YET:
        error = SchedulerError if from_cli else ConfigError
        raise error(
            f"{where}: the {name} scheduler is not available yet (dask-jobqueue clusters are planned); "
            f"use {', '.join(SCHEDULERS)}, or start a dask scheduler on the cluster yourself and pass "
            "--address tcp://host:8786"
        )
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
    threads = spec.threads if same and spec.threads is not None else None
    workers = workers or (1 if threads is None else max(1, _cores() // threads))
    threads = threads or max(1, _cores() // workers)
    return Execution("distributed", workers, threads, spec.memory_limit if same else None)


def _check_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise SchedulerError(
            "the distributed scheduler needs dask.distributed: pip install 'convflow[distributed]'"
        ) from err


@contextlib.contextmanager
def scheduler(execution: Execution) -> Iterator[dict[str, Any]]:
    """Start what `execution` needs and yield the keyword arguments for ``dask.compute``."""
    if execution.scheduler == "synchronous":
        yield {"scheduler": "synchronous"}
        return
    if execution.scheduler in ("threads", "processes"):
        yield {"scheduler": execution.scheduler, "num_workers": execution.workers}
        return
    from distributed import Client, LocalCluster

    if execution.address is not None:
        try:
            client = Client(execution.address, timeout="10s", set_as_default=False)
        except OSError as err:
            raise SchedulerError(
                f"cannot reach a dask scheduler at {execution.address}: {err}; start one "
                "(dask scheduler) or check the address"
            ) from err
        with client:
            yield {"scheduler": client}
        return
    cluster = LocalCluster(
        n_workers=execution.workers,
        threads_per_worker=execution.threads,
        memory_limit=execution.memory_limit if execution.memory_limit is not None else "auto",
        host="127.0.0.1",
        dashboard_address=None,
    )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield {"scheduler": client}


class TaskProgress(Callback):
    """Counts finished tasks of dask's local schedulers: a tqdm bar, or a log line now and then.

    Each ``dask.compute`` of the run adds its tasks to the total, so a run
    that computes in several steps (TIFF outputs, band by band) counts all.
    """

    def __init__(self, style: str, stream: IO[str], interval: float = LOG_INTERVAL) -> None:
        super().__init__()
        self.style, self.stream, self.interval = style, stream, interval
        self.total = self.done = 0
        self.started = self.logged = time.monotonic()
        self.bar: Any = None
        if style == "bar":
            from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

            self.bar = tqdm(total=0, unit="task", file=stream, desc="convflow", dynamic_ncols=True)

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        self.total += len(state["ready"]) + len(state["waiting"])
        if self.bar is not None:
            self.bar.total = self.total
            self.bar.refresh()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif time.monotonic() - self.logged >= self.interval:
            self.logged = time.monotonic()
            self._line()

    def _line(self, last: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        when = f"done in {elapsed:.1f} s" if last else f"{elapsed:.1f} s elapsed"
        print(f"convflow: {self.done}/{self.total} tasks{share}, {when}", file=self.stream)
        self.stream.flush()

    def close(self, finished: bool) -> None:
        """Close the bar, or write the last log line."""
        if self.bar is not None:
            self.bar.close()
        elif finished:
            self._line(last=True)


def progress_style(requested: str, stream: IO[str]) -> str:
    """``bar`` on a terminal, ``log`` lines otherwise, unless `requested` says which."""
    if requested != "auto":
        return requested
    return "bar" if stream.isatty() else "log"


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
        `LOG_INTERVAL` seconds.  Only the local schedulers report progress.
    stream : file, optional
        Where progress goes (default: stderr).

    Returns
    -------
    list of WriteReport
        One per output file, in the plan's order.
    """
    stream = stream if stream is not None else sys.stderr
    style = progress_style(progress, stream)
    jobs = [(target.array, target.path, target.options) for target in plan.outputs]
    with scheduler(execution) as compute_kwargs:
        if style == "none" or execution.scheduler == "distributed":
            if style != "none":  # dask's local callbacks see nothing of a distributed run
                print(f"convflow: computing on the {execution.describe()}", file=stream)
            return write_outputs(jobs, overwrite=overwrite, resume=resume, compute_kwargs=compute_kwargs)
        tracker = TaskProgress(style, stream)
        finished = False
        try:
            with tracker:
                reports = write_outputs(
                    jobs, overwrite=overwrite, resume=resume, compute_kwargs=compute_kwargs
                )
            finished = True
        finally:
            tracker.close(finished)
        return reports
