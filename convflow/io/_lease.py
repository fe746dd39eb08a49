"""One writer per output: the lease a run holds on each output it writes, beside it.

A run that writes ``out/a.zarr`` first creates ``out/a.zarr.convflow-lease``,
a small JSON file naming it: host, process id, the process's start time,
the hash of its provenance (config), and when it took the lease.  Every
other run onto that output, ``--overwrite`` and ``--resume`` included, reads
the file and refuses, naming the holder (`OutputLockedError`), before it
deletes or creates anything.  The holder removes the file when it is done,
whether it finished or failed; a run killed with SIGKILL leaves it behind,
and the next run recognises it as stale and takes it over, so ``--resume``
after a kill needs no manual step:

- on the holder's host, the lease is stale once its process is gone, or its
  pid now belongs to another process (the start time differs: pids are
  reused), or the machine rebooted since (another boot id);
- on any other host, the lease is stale once the holder stopped renewing
  it: a live holder touches the file every `HEARTBEAT` seconds, and a file
  untouched for `EXPIRY` seconds is taken over.

The file is created whole and atomically: written under a name of its own,
then hard-linked to the lease name, which fails if that name exists
(``link`` is atomic on local file systems and on NFS, where ``O_EXCL`` was
not before NFSv3 and ``flock`` may not reach the server).  A stale lease is
renamed away (one rename of a name succeeds) before the new one is linked.
Those names of their own say whose they are
(``X.convflow-lease.HOST.PID.TOKEN.tmp`` and ``....stale``), so what a run
killed between the steps left is removed by the next holder: once that
process is gone (on its host), or after `EXPIRY` seconds (elsewhere).
On an object store (an output at an ``s3://`` or ``gs://`` URL) the lease is
an object beside the output, and the same steps are a conditional put
(``If-None-Match: *``, which fails if the object exists) and a conditional
delete (``If-Match`` on the stale lease's ETag, which fails if a racing run
replaced it meanwhile); the heartbeat is a put conditional on our own ETag,
and "untouched" is the object's LastModified.  S3 (and moto's server, which
the tests run) honour both conditions on PutObject and DeleteObject; GCS
takes them on the object's generation (``ifGenerationMatch``, 0 for the
create), and fake-gcs-server, which the tests run, honours them on uploads.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from convflow.errors import OutputError, OutputLockedError
from convflow.io import _stores
from convflow.io._objects import ConditionalObject

SUFFIX = ".convflow-lease"
# A live holder touches its lease this often; on other hosts a lease untouched for EXPIRY
# seconds is stale.  The margin covers a loaded machine and clocks a few seconds apart.
HEARTBEAT = 10.0
EXPIRY = 120.0
# Leases this process holds now: lease path -> (token, thread that took it).  The writer's own
# check under its leases (same thread) does not refuse them; any other thread is another writer.
_HELD: dict[str, tuple[str, int]] = {}
_HELD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: enough to name the run and to tell whether it is still alive."""

    host: str
    pid: int
    started: str  # when the holding process started (its own clock), for people
    process_start: str | None  # the process's start in kernel ticks since boot, or None off Linux
    boot_id: str | None
    config: str  # sha256 of the provenance, first 16 hex digits
    acquired: str
    token: str

    def describe(self) -> str:
        """The holder as one phrase, for error messages."""
        return (
            f"convflow run pid {self.pid} on host {self.host}, started {self.started}, "
            f"config sha256 {self.config}, holding it since {self.acquired}"
        )


def lease_path(path: str) -> str:
    """The lease file of output `path`: beside it, so removing the output keeps the lease.

    Examples
    --------
    >>> lease_path("out/a.zarr/")
    'out/a.zarr.convflow-lease'
    """
    return path.rstrip("/\\") + SUFFIX


def check_free(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Raise OutputLockedError if a live run holds output `path`, unless this very writer (thread) does."""
    lease = lease_path(path)
    if _stores.is_remote(path):
        found = _ObjectLease(lease, storage_options).read()
        holder, touched = (None, 0.0) if found is None else (found[0], found[2])
    else:
        holder, touched = _read(lease), 0.0
    if holder is None:
        return
    with _HELD_LOCK:
        if _HELD.get(lease) == (holder.token, threading.get_ident()):
            return
    stale = _is_stale(lease, holder, touched if _stores.is_remote(path) else None)
    if not stale:
        raise _locked(path, lease, holder)


def take(
    outputs: dict[str, dict[str, Any] | None], storage_options: dict[str, dict[str, Any] | None] | None = None
) -> Lease:
    """Take the lease of every output (path -> its provenance) and start renewing them.

    `storage_options` maps an output at a URL to the options of its store.

    The caller releases them (`Lease.release`) when it is done, in a ``finally``.

    Raises
    ------
    OutputLockedError
        A live run holds one of them; the leases taken so far are released
        and nothing else was touched.
    OutputError
        A lease could not be written (unwritable folder).
    """
    held = Lease()
    options = storage_options or {}
    try:
        for path, provenance in outputs.items():
            text = json.dumps(_stores.redact(provenance), sort_keys=True, default=str)
            held.acquire(path, hashlib.sha256(text.encode()).hexdigest()[:16], options.get(path))
    except BaseException:
        held.release()
        raise
    _sweep(list(held.held))
    held.start_heartbeat()
    return held


def _sweep(leases: list[str]) -> None:
    """Remove the drafts and renamed-away leases that killed runs left beside `leases` (ours now).

    One listing per folder of outputs, never of an output's own files.
    """
    for folder in {os.path.dirname(os.path.abspath(lease)) for lease in leases}:
        prefixes = tuple(os.path.basename(lease) + "." for lease in leases)
        try:
            names = [name for name in os.listdir(folder) if name.startswith(prefixes)]
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            if _is_left_over(path, name.split(SUFFIX + ".", 1)[-1]):
                with contextlib.suppress(OSError):  # a racing holder removed it first
                    os.remove(path)


def _is_left_over(path: str, tail: str) -> bool:
    """Whether a lease's draft or renamed-away copy (`tail`: HOST.PID.TOKEN.KIND) outlived its writer."""
    parts = tail.rsplit(".", 3)
    if len(parts) != 4 or parts[3] not in ("tmp", "stale") or not parts[1].isdigit():
        return False
    host, pid = parts[0], int(parts[1])
    if host != socket.gethostname():
        return _is_old(path)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return False


def _own_name(lease: str, kind: str) -> str:
    """A name of this process's own beside `lease`: a draft (``tmp``), or a lease moved away (``stale``)."""
    return f"{lease}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex}.{kind}"


class Lease:
    """The leases one writer holds, and the thread that renews them."""

    def __init__(self) -> None:
        self.held: dict[str, Holder] = {}  # lease path -> our holder record
        self.objects: dict[str, _ObjectLease] = {}  # lease URL -> its object, for outputs at URLs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, path: str, config: str, storage_options: dict[str, Any] | None = None) -> None:
        """Take the lease of output `path`, taking over a stale one; refuse a live holder."""
        lease = lease_path(path)
        mine = _me(config)
        if _stores.is_remote(path):
            self._acquire_object(path, _ObjectLease(lease, storage_options), mine)
            return
        folder = os.path.dirname(os.path.abspath(lease))
        try:
            os.makedirs(folder, exist_ok=True)
            for _ in range(5):  # each retry follows a stale lease removed, by us or a racing run
                if _create(lease, mine):
                    self.held[lease] = mine
                    with _HELD_LOCK:
                        _HELD[lease] = (mine.token, threading.get_ident())
                    return
                holder = _read(lease)
                if holder is None:
                    if os.path.lexists(lease) and not _is_old(lease):
                        raise OutputLockedError(
                            f"{path}: {lease} is not a convflow lease; convflow keeps it there while a run "
                            "writes the output: remove it if no run is writing, then run again"
                        )
                    _break(lease, None)
                elif not _is_stale(lease, holder):
                    raise _locked(path, lease, holder)
                else:
                    _break(lease, holder.token)
        except OutputLockedError:
            raise
        except OSError as err:
            raise OutputError(
                f"{path}: cannot take the lease {lease} that keeps a second run off the output: {err}; "
                "check the disk space and permissions of that folder, then rerun with --resume (resume=True)"
            ) from err
        raise OutputLockedError(f"{path}: other runs keep taking its lease {lease}; run again once they end")

    def _acquire_object(self, path: str, lease: _ObjectLease, mine: Holder) -> None:
        """`acquire` for an output at a URL: a conditional put, and a conditional delete of a stale lease."""
        try:
            for _ in range(5):  # each retry follows a stale lease removed, by us or a racing run
                if lease.create(mine):
                    self.held[lease.url] = mine
                    self.objects[lease.url] = lease
                    with _HELD_LOCK:
                        _HELD[lease.url] = (mine.token, threading.get_ident())
                    return
                found = lease.read()
                if found is None:
                    continue  # removed between our put and our read
                holder, etag, touched = found
                if holder is not None and not _is_stale(lease.url, holder, touched):
                    raise _locked(path, lease.url, holder)
                if holder is None and not time.time() - touched > EXPIRY:
                    raise OutputLockedError(
                        f"{_stores.redact_text(path)}: {_stores.redact_text(lease.url)} is not a convflow "
                        "lease; convflow keeps it there while a run writes the output: remove it if no run "
                        "is writing, then run again"
                    )
                lease.delete(etag)
        except OutputLockedError:
            raise
        except _stores.store_errors() as err:
            raise _stores.store_error(lease.url, err, writing=True) from err
        raise OutputLockedError(
            f"{_stores.redact_text(path)}: other runs keep taking its lease; run again once they end"
        )

    def start_heartbeat(self) -> None:
        """Renew the leases every HEARTBEAT seconds, so other hosts see the holder alive."""
        if self.held:
            self._thread = threading.Thread(target=self._beat, name="convflow-lease", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            for lease, mine in list(self.held.items()):
                if lease in self.objects:
                    with contextlib.suppress(*_stores.store_errors()):  # retried at the next beat
                        self.objects[lease].renew(mine)
                    continue
                holder = _read(lease)
                if holder is not None and holder.token == mine.token:
                    with contextlib.suppress(OSError):  # a missed beat is retried; expiry has a margin
                        os.utime(lease)

    def check(self, path: str) -> None:
        """Raise OutputError unless this writer still holds output `path` (before marking it done)."""
        lease = lease_path(path)
        mine = self.held.get(lease)
        if lease in self.objects:
            found = self.objects[lease].read()
            holder = None if found is None else found[0]
        else:
            holder = _read(lease)
        if mine is not None and (holder is None or holder.token != mine.token):
            taken = f"; it is now held by {holder.describe()}" if holder is not None else ""
            raise OutputError(
                f"{_stores.redact_text(path)}: this run lost its lease {_stores.redact_text(lease)} (it was "
                f"removed or taken over{taken}), "
                "so it does not mark the output complete; check that no other run writes it, then "
                "run again with --resume"
            )

    def release(self) -> None:
        """Stop renewing and remove every lease still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for lease, mine in self.held.items():
            with _HELD_LOCK:
                _HELD.pop(lease, None)
            if lease in self.objects:
                with contextlib.suppress(*_stores.store_errors()):  # a lease left behind goes stale
                    self.objects[lease].release(mine)
                continue
            holder = _read(lease)
            if holder is not None and holder.token == mine.token:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lease)
        self.held, self.objects = {}, {}


class _ObjectLease:
    """The lease object of an output at a URL (`ConditionalObject`), holding a `Holder`."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url = url
        self.object = ConditionalObject(url, storage_options)
        self.etag: str | None = None  # ours, once created

    def create(self, holder: Holder) -> bool:
        """Put the lease holding `holder` unless one exists; return whether it was put."""
        made = self.object.create(json.dumps(asdict(holder)).encode())
        self.etag = made if isinstance(made, str) else None
        return made is not False

    def read(self) -> tuple[Holder | None, str | None, float] | None:
        """(holder, or None if not a lease; ETag; last renewed, a timestamp), or None when absent."""
        found = self.object.read()
        if found is None:
            return None
        body, etag, touched = found
        try:
            return Holder(**json.loads(body)), etag, touched
        except (ValueError, TypeError):
            return None, etag, touched

    def delete(self, etag: str | None) -> None:
        """Remove the lease if it is still the one read (its ETag is `etag`)."""
        self.object.delete(etag)

    def renew(self, mine: Holder) -> None:
        """Put our lease again, only while it is ours: a new LastModified for other hosts to see."""
        body = json.dumps(asdict(mine)).encode()
        if self.etag is None:
            found = self.read()
            if found is None or found[0] is None or found[0].token != mine.token:
                return
        self.etag = self.object.replace(body, self.etag)

    def release(self, mine: Holder) -> None:
        """Remove our lease, unless another run holds it now."""
        found = self.read()
        if found is not None and found[0] is not None and found[0].token == mine.token:
            self.delete(found[1])


def _locked(path: str, lease: str, holder: Holder) -> OutputLockedError:
    path, lease = _stores.redact_text(path), _stores.redact_text(lease)
    return OutputLockedError(
        f"{path}: another run is writing it: {holder.describe()} (lease {lease}); wait for that run to "
        "end, or stop it: a stopped or killed run's lease is taken over, and --resume finishes the output"
    )


def _me(config: str) -> Holder:
    """This process as a lease holder."""
    pid = os.getpid()
    return Holder(
        host=socket.gethostname(),
        pid=pid,
        started=_PROCESS_STARTED,
        process_start=_process_start(pid),
        boot_id=_boot_id(),
        config=config,
        acquired=_now(),
        token=uuid.uuid4().hex,
    )


def _create(lease: str, holder: Holder) -> bool:
    """Create `lease` holding `holder`, whole, unless it exists; return whether it was created."""
    draft = _own_name(lease, "tmp")
    try:
        with open(draft, "x", encoding="utf-8") as file:
            json.dump(asdict(holder), file)
            file.flush()
            os.fsync(file.fileno())
    except OSError:  # a full disk: no draft left behind
        with contextlib.suppress(FileNotFoundError):
            os.remove(draft)
        raise
    try:
        os.link(draft, lease)
    except FileExistsError:
        return False
    finally:
        os.remove(draft)
    return True


def _read(lease: str) -> Holder | None:
    """The holder recorded in `lease`, or None when there is none (or the file is not a lease)."""
    try:
        with open(lease, encoding="utf-8") as file:
            return Holder(**json.load(file))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None


def _break(lease: str, token: str | None) -> None:
    """Remove the stale lease whose token is `token`, leaving any other in place."""
    moved = _own_name(lease, "stale")
    try:
        os.rename(lease, moved)
    except FileNotFoundError:
        return  # another run removed it first
    holder = _read(moved)
    if token is not None and (holder is None or holder.token != token):
        # A racing run replaced the stale lease between our read and our rename: put its lease back.
        with contextlib.suppress(FileExistsError):
            os.link(moved, lease)
    os.remove(moved)


def _is_stale(lease: str, holder: Holder, touched: float | None = None) -> bool:
    """Whether `holder` no longer runs: its process is gone (same host), or it stopped renewing.

    `touched` is when a lease object was last renewed; None for a lease file (its mtime counts).
    """
    if holder.host != socket.gethostname():
        return time.time() - touched > EXPIRY if touched is not None else _is_old(lease)
    if holder.boot_id is not None and holder.boot_id != _boot_id():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    if holder.process_start is not None:
        return _process_start(holder.pid) != holder.process_start
    return False


def _is_old(lease: str) -> bool:
    """Whether `lease` was last touched more than EXPIRY seconds ago (by the file system's clock)."""
    try:
        touched = os.stat(lease).st_mtime
    except FileNotFoundError:
        return True
    return datetime.datetime.now().timestamp() - touched > EXPIRY


def _process_start(pid: int) -> str | None:
    """The start of process `pid` in clock ticks since boot (Linux), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None  # field 22 of proc(5); fields here start at 3


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as file:
            return file.read().strip()
    except OSError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


_PROCESS_STARTED = _now()  # when convflow's io was first imported: close enough to name a run
