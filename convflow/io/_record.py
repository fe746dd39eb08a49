"""The record of finished waves beside an output, so a resume skips them without asking the disk.

Finding which chunks of a resumed output are stored used to mean listing
every file under it before the first task: millions of files at a TiB.  A
run instead keeps, beside each output it writes, a small JSON file with the
layout of its waves (a `signature`) and the number of waves all finished in
order (`done`): a wave counts only once every one of its block writes has
returned, so nothing not completely written is ever trusted.  A resume with
the same layout skips the waves before `done` outright and asks the disk
only about the chunks of the waves after.  A record of another layout (other
chunks, another wave size) is ignored, and the resume asks the disk about
every chunk, as it comes.  The file is replaced atomically after each wave
and removed once the output is complete.  For an output at a URL the record
is an object beside it, put whole in one request.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import uuid
from typing import Any

from convflow.io import _stores

# Beside the output `path`: `path` + this suffix.
SUFFIX = ".convflow-waves"


def record_path(path: str) -> str:
    """The record of output `path`.

    Examples
    --------
    >>> record_path("out/edges.zarr")
    'out/edges.zarr.convflow-waves'
    """
    return f"{path.rstrip('/')}{SUFFIX}"


def _load(path: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record of output `path` as a dict, or None when there is none readable."""
    try:
        if _stores.is_remote(path):
            data = _stores.read_bytes(record_path(path), storage_options)
            record = None if data is None else json.loads(data)
        else:
            with open(record_path(path), encoding="utf-8") as file:
                record = json.load(file)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_done(path: str, signature: str, storage_options: dict[str, Any] | None = None) -> int:
    """Waves of the layout `signature` that a run onto output `path` finished in order; 0 if none known."""
    record = _load(path, storage_options)
    if record is None:
        return 0
    if record.get("signature") != signature or not isinstance(record.get("done"), int):
        return 0
    return max(0, record["done"])


def write_done(
    path: str,
    signature: str,
    done: int,
    chunks: int = 0,
    seconds: float = 0.0,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Record that the first `done` waves of layout `signature` are written to output `path` (atomically).

    `chunks` blocks computed in `seconds` by this run are kept too: the
    measured cost per chunk that ``convflow plan`` shows (`measured_cost`).
    """
    target = record_path(path)
    record = {"signature": signature, "done": done, "chunks": chunks, "seconds": seconds}
    if _stores.is_remote(path):
        _stores.write_bytes(target, json.dumps(record).encode(), storage_options)
        return
    partial = f"{target}.{uuid.uuid4().hex}.partial"
    with open(partial, "w", encoding="utf-8") as file:
        json.dump(record, file)
    os.replace(partial, target)


def measured_cost(path: str, storage_options: dict[str, Any] | None = None) -> float | None:
    """Seconds per chunk that the last run onto output `path` measured, if it left a record.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp() + "/out.zarr"
    >>> measured_cost(out) is None
    True
    >>> write_done(out, "layout", 3, chunks=12, seconds=6.0)
    >>> measured_cost(out)
    0.5
    """
    record = _load(path, storage_options)
    if record is None:
        return None
    chunks, seconds = record.get("chunks"), record.get("seconds")
    if not isinstance(chunks, int) or not isinstance(seconds, int | float) or chunks <= 0:
        return None
    return float(seconds) / chunks


def remove_record(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove the record of output `path`, if there is one, and any replacement a killed run left."""
    target = record_path(path)
    if _stores.is_remote(path):
        _stores.remove(target, storage_options)
        return
    for leftover in [target, *glob.glob(f"{glob.escape(target)}.*.partial")]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)
