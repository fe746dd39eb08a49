"""The `convflow` provenance record stored with every output, and its comparison on resume."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import numpy as np

from convflow.errors import ArgumentError
from convflow.io import _stores
from convflow.io._image import InputImage

# Keys convflow itself sets; a caller's provenance may use any other key.
RESERVED = frozenset({"version", "started", "finished", "resumed", "incomplete", "inputs", "output"})
# Keys that must match for a run to resume an incomplete output; times and status may differ.
_VOLATILE = frozenset({"started", "finished", "resumed", "incomplete"})


def now() -> str:
    """Return the current UTC time in ISO 8601, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def canonical(value: Any, what: str = "provenance") -> Any:
    """Return `value` as plain JSON data (dicts, lists, str, numbers), or raise naming what fails.

    Examples
    --------
    >>> canonical({"sigma": np.float32(1.5), "size": (3, 3)})
    {'sigma': 1.5, 'size': [3, 3]}
    """

    def plain(item: Any) -> Any:
        if isinstance(item, (np.generic, np.ndarray)):
            return item.tolist()
        if isinstance(item, PurePath):
            return str(item)
        if isinstance(item, (set, frozenset)):
            return sorted(item)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return dataclasses.asdict(item)
        raise TypeError(type(item).__name__)

    try:
        return json.loads(json.dumps(value, default=plain))
    except (TypeError, ValueError) as err:
        raise ArgumentError(
            f"{what} holds a value of type {err} that cannot be stored as JSON; pass numbers, strings, "
            "lists and dicts"
        ) from err


def describe_inputs(inputs: Sequence[InputImage | str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Return the provenance entry of each input: absolute path, and shape and dtype when opened."""
    entries = []
    for item in inputs:
        if isinstance(item, InputImage):
            entry: dict[str, Any] = {"path": _absolute(item.path), "format": item.format}
            entry |= {"shape": list(item.shape), "dtype": str(item.dtype)}
            if item.dataset is not None:
                entry["dataset"] = item.dataset
            if item.files:
                entry["files"] = len(item.files)
        else:
            entry = {"path": _absolute(os.fspath(item))}
        entries.append(entry)
    return entries


def _absolute(path: str) -> str:
    """Return `path` made absolute (a glob stays a glob); a URL redacted of any secret it holds."""
    if _stores.is_remote(path):
        return _stores.redact_text(path)  # type: ignore[no-any-return]
    return os.path.abspath(os.path.expanduser(_stores.local_path(path)))


def new_record(
    provenance: dict[str, Any] | None, inputs: list[dict[str, Any]], output: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the record of a run that starts now: marked incomplete until `finished_record`."""
    # Storage options and URLs in it are recorded without their secrets (keys, tokens, signatures).
    given = _stores.redact(canonical(provenance or {}))
    if not isinstance(given, dict):
        raise ArgumentError(f"provenance={provenance!r} must be a dict, e.g. {{'config': {{...}}}}")
    clash = sorted(RESERVED & set(given))
    if clash:
        raise ArgumentError(
            f"provenance uses the key(s) {', '.join(map(repr, clash))}, which convflow sets itself; "
            "rename them"
        )
    from convflow import __version__  # late: convflow/__init__ may one day import convflow.io

    record = {"version": __version__, **given, "inputs": inputs, "started": now(), "incomplete": True}
    if output is not None:
        record["output"] = canonical(output)
    return record


def finished_record(record: dict[str, Any], resumed: bool) -> dict[str, Any]:
    """Return `record` marked complete, with its end time (and the time of this resume)."""
    done = {key: value for key, value in record.items() if key != "incomplete"}
    if resumed:
        done["resumed"] = [*record.get("resumed", []), now()]
    done["finished"] = now()
    return done


def first_difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Return 'key: stored ... , this run ...' for the first key that differs, or None.

    Examples
    --------
    >>> first_difference({"config": {"sigma": 1}, "started": "x"}, {"config": {"sigma": 2}, "started": "y"})
    'config.sigma: stored 1, this run 2'
    """
    keys = sorted((set(stored) | set(current)) - _VOLATILE)
    return _differ(stored, current, keys, "")


def _differ(stored: Any, current: Any, keys: list[Any], prefix: str) -> str | None:
    """Return the first difference between two JSON values, by key path."""
    for key in keys:
        old, new = stored.get(key, "(absent)"), current.get(key, "(absent)")
        name = f"{prefix}{key}"
        if isinstance(old, dict) and isinstance(new, dict):
            found = _differ(old, new, sorted(set(old) | set(new)), name + ".")
            if found:
                return found
        elif old != new:
            return f"{name}: stored {_short(old)}, this run {_short(new)}"
    return None


def _short(value: Any) -> str:
    """Return JSON text of `value`, cut to 80 characters."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
