"""Progress of a run: a tqdm bar on a terminal, a log line now and then elsewhere, on every scheduler."""

from __future__ import annotations

import os
import threading
import time
from typing import IO, Any

from dask.callbacks import Callback

PROGRESS = ("auto", "bar", "log", "none")
# Seconds between two progress messages from a distributed scheduler.
_FEED_INTERVAL = 0.1
# Seconds between two progress lines when stderr is not a terminal.
LOG_INTERVAL = 10.0


def progress_style(requested: str, stream: IO[str]) -> str:
    """``bar`` on a terminal, ``log`` lines otherwise, unless `requested` says which.

    A pseudo-terminal that reports 0 columns (as ``script`` gives) cannot show
    a bar: it gets the log lines.
    """
    if requested != "auto":
        return requested
    if not stream.isatty():
        return "log"
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return "bar" if columns > 0 else "log"


class _Counter:
    """A tqdm bar, or a log line now and then, of `unit` done out of a total that may grow.

    A run that also says how many chunks of all it has written (`chunks`)
    gets those, with their rate and the time left, at the head of the log
    line and on the bar in place of the tasks: the chunks' total is the whole
    run's from the start, where tasks are only known wave by wave (their
    ratio, near 100% all run long, follows as "tasks of the waves so far").
    The rate counts the chunks this run wrote since its first count (the
    start of compute), never those a resume found written.
    """

    def __init__(
        self, style: str, stream: IO[str], interval: float = LOG_INTERVAL, unit: str = "task"
    ) -> None:
        self.style, self.stream, self.interval, self.unit = style, stream, interval, unit
        self.total = self.done = 0
        self.chunks_done = self.chunks_total = self.chunks_found = 0
        self.chunks_started: float | None = None  # when the first chunk count came: compute starts
        self.started = self.logged = time.monotonic()
        self.bar: Any = None
        self._guard = threading.RLock()
        if style == "bar":
            from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs shipped

            self.bar = tqdm(total=0, unit=unit, file=stream, desc="convflow", dynamic_ncols=True)

    def _grow(self, total: int) -> None:
        with self._guard:
            self.total = total
            if self.bar is not None and not self.chunks_total:
                self.bar.total = total
                self.bar.refresh()

    def _advance(self, done: int) -> None:
        with self._guard:
            if self.bar is not None and not self.chunks_total:
                self.bar.update(done - self.done)
            self.done = done
            self._maybe_log()

    def chunks(self, done: int, total: int, found: int = 0) -> None:
        """`done` chunks of the run's `total` are stored, `found` of them already there (on a resume)."""
        with self._guard:
            if self.chunks_started is None:
                self.chunks_started = time.monotonic()
                if self.bar is not None:
                    self.bar.unit = "chunk"
                    self.bar.reset(total=total)
            if self.bar is not None:
                self.bar.update(done - self.chunks_done)
            self.chunks_done, self.chunks_total, self.chunks_found = done, total, found
            self._maybe_log()

    def _maybe_log(self) -> None:
        if self.bar is None and time.monotonic() - self.logged >= self.interval:
            self.logged = time.monotonic()
            self._line()

    def _chunk_text(self) -> str:
        """``40/512 chunks (7%), 12.5 chunks/s, 37 s left``: empty before the first chunk count."""
        if not self.chunks_total or self.chunks_started is None:
            return ""
        elapsed = time.monotonic() - self.chunks_started
        rate = (self.chunks_done - self.chunks_found) / elapsed if elapsed > 0 else 0.0
        share = 100 * self.chunks_done // self.chunks_total
        text = f"{self.chunks_done}/{self.chunks_total} chunks ({share}%), {rate:.1f} chunks/s"
        left = self.chunks_total - self.chunks_done
        if left and rate > 0:
            text += f", {duration_text(left / rate)} left"
        return text

    def _line(self, last: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        when = f"done in {elapsed:.1f} s" if last else f"{elapsed:.1f} s elapsed"
        chunks = self._chunk_text()
        if chunks:
            line = f"convflow: {chunks}, {when}; {self.done}/{self.total} {self.unit}s of the waves so far"
        else:
            share = f" ({100 * self.done // self.total}%)" if self.total else ""
            line = f"convflow: {self.done}/{self.total} {self.unit}s{share}, {when}"
        print(line, file=self.stream)
        self.stream.flush()

    def close(self, finished: bool) -> None:
        """Close the bar, or write the last log line."""
        if self.bar is not None:
            self.bar.close()
        elif finished:
            self._line(last=True)


def duration_text(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.0 h``, ``3.1 days``.

    Examples
    --------
    >>> duration_text(42.4), duration_text(210), duration_text(7200), duration_text(3 * 86400)
    ('42 s', '3.5 min', '2.0 h', '3.0 days')
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class TaskProgress(Callback, _Counter):
    """Counts finished tasks of dask's local schedulers: a tqdm bar, or a log line now and then.

    Each ``dask.compute`` of the run adds its tasks to the total, so a run
    that computes in several steps (TIFF outputs, band by band) counts all.
    """

    def __init__(self, style: str, stream: IO[str], interval: float = LOG_INTERVAL) -> None:
        Callback.__init__(self)
        _Counter.__init__(self, style, stream, interval)

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        self._grow(self.total + len(state["ready"]) + len(state["waiting"]))

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        self._advance(self.done + 1)


class ClusterProgress(_Counter):
    """Progress of a distributed run: tasks done out of all tasks, as the scheduler counts them.

    ``dask.compute`` on a Client submits each compute's graph and waits for
    its result keys.  A thread here watches the client for those keys, holds
    them (so they stay known to the scheduler), and for each asks the
    scheduler for distributed's own progress feed (the one
    ``distributed.progress`` draws): a count of the key's tasks still to run.
    Only distributed's code runs on the scheduler, so any scheduler will do.
    """

    def __init__(self, client: Any, style: str, stream: IO[str], interval: float = LOG_INTERVAL) -> None:
        super().__init__(style, stream, interval)
        self.client = client
        self.feeds: dict[Any, tuple[int, int]] = {}  # result key -> (all tasks, remaining)
        self.held: list[Any] = []
        self.last_feed_end = 0.0
        self.active: set[Any] = set()  # keys whose feed is still open
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="convflow-progress", daemon=True)

    def __enter__(self) -> ClusterProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # A feed reports the finish of its key at its next tick; a cluster closed before that, or
        # while the scheduler sleeps one interval after a feed's last message, logs a
        # CancelledError traceback.  So wait (briefly, and boundedly) for the feeds to end.
        deadline = time.monotonic() + 10 * _FEED_INTERVAL
        while self.active and time.monotonic() < deadline:
            time.sleep(_FEED_INTERVAL / 5)
        time.sleep(max(0.0, self.last_feed_end + 4 * _FEED_INTERVAL - time.monotonic()))
        for future in self.held:
            future.release()

    def _watch(self) -> None:
        from distributed import Future

        while not self._stop.wait(0.1):
            try:  # the client's event loop changes this dict while we read it
                keys = [key for key, state in list(self.client.futures.items()) if state.status == "pending"]
            except RuntimeError:
                continue
            for key in keys:
                if key not in self.feeds:
                    self.feeds[key] = (0, 0)
                    self.held.append(Future(key, self.client))
                    self.client.loop.add_callback(self._feed, key)

    async def _feed(self, key: Any) -> None:
        import asyncio

        from distributed.core import CommClosedError, connect
        from distributed.diagnostics.progress import Progress
        from distributed.protocol.pickle import dumps

        keys = {key}

        async def setup(scheduler: Any) -> Any:
            for _ in range(100):  # a key gone for 5 s was done and forgotten: nothing to follow
                if keys.issubset(scheduler.tasks):
                    progress = Progress(keys, scheduler, complete=True)
                    await progress.setup()
                    return progress
                await asyncio.sleep(0.05)
            return None

        def function(scheduler: Any, progress: Any) -> dict[str, Any]:
            if progress is None:
                return {"all": 0, "remaining": 0, "status": "finished"}
            return {"all": len(progress.all_keys), "remaining": len(progress.keys), "status": progress.status}

        client = self.client
        self.active.add(key)
        try:
            comm = await connect(client.scheduler.address, **client.connection_args)
            await comm.write(
                {
                    "op": "feed",
                    "setup": dumps(setup),
                    "function": dumps(function),
                    "interval": _FEED_INTERVAL,
                },
                serializers=client._serializers,
            )
            try:
                while True:
                    response = await comm.read(deserializers=client._deserializers)
                    self._count(key, response["all"], response["remaining"])
                    if response["status"] in ("error", "finished"):
                        break
            finally:
                self.last_feed_end = time.monotonic()
                await comm.close()
        except (CommClosedError, OSError):  # progress is a courtesy: the run itself reports failures
            return
        finally:
            self.active.discard(key)

    def _count(self, key: Any, total: int, remaining: int) -> None:
        with self._guard:
            self.feeds[key] = (total, remaining)
            total = sum(every for every, _ in self.feeds.values())
            done = sum(every - left for every, left in self.feeds.values())
            if total != self.total:
                self._grow(total)
            if done != self.done:
                self._advance(done)

    def close(self, finished: bool) -> None:
        """Count what finished since the last report, then close the bar or write the last line."""
        if finished and self.done < self.total:
            self._advance(self.total)
        super().close(finished)
