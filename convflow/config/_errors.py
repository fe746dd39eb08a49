"""Pydantic's validation errors as ConfigErrors that name the file, line, key path and fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from convflow.config._source import KeyPath, Source
from convflow.errors import ConfigError


class KeyedError(ValueError):
    """A ValueError from a model validator that names the key (below the model) at fault."""

    def __init__(self, key: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key = key


def did_you_mean(value: object, options: Sequence[str]) -> str:
    """Return `` Did you mean 'x'?`` for the closest option, or an empty string.

    Examples
    --------
    >>> did_you_mean("sobl", ["smooth", "sobel"])
    " Did you mean 'sobel'?"
    """
    close = difflib.get_close_matches(str(value), list(options), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def translate(source: Source, err: ValidationError, root: type[BaseModel]) -> ConfigError:
    """Turn pydantic's first error (with its union alternatives) into one ConfigError.

    `root` is the model that validated ``source.data``; its fields list the valid keys.
    """
    problems = [(_clean_loc(source.data, e["loc"], e["type"] == "missing"), e) for e in err.errors()]
    key, first = problems[0]
    if first["type"] == "missing":
        # A misspelt key is both missing and unknown: the unknown spelling is the one to fix.
        misspelt = [(k, e) for k, e in problems if e["type"] == "extra_forbidden" and k[:-1] == key[:-1]]
        key, first = misspelt[0] if misspelt else (key, first)
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        error = ctx.get("error")
        if isinstance(error, KeyedError):
            key = (*key, *error.key)
        return source.error(key, str(error))
    if kind == "extra_forbidden":
        model = _model_at(root, key[:-1])
        valid = list(model.model_fields) if model else []
        return source.error(
            key, f"unknown key {key[-1]!r}.{did_you_mean(key[-1], valid)} Valid keys here: {', '.join(valid)}"
        )
    if kind == "missing":
        model = _model_at(root, key[:-1])
        info = model.model_fields.get(str(key[-1])) if model else None
        hint = f" ({info.description})" if info is not None and info.description else ""
        return source.error(key[:-1], f"missing required key {key[-1]!r}{hint}")
    value = first.get("input")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(root, key)
        keys = f" with the keys {', '.join(model.model_fields)}" if model else ""
        return source.error(key, f"got {_show(value)}; expected a mapping{keys}")
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return source.error(key, f"got {_show(value)}; give at least {least} item{'s' if least != 1 else ''}")
    alternatives = dict.fromkeys(_reword(e["msg"]) for k, e in problems if k == key)
    return source.error(key, f"got {_show(value)}; expected {' or '.join(alternatives)}")


def _reword(message: str) -> str:
    """Pydantic's 'Input should be a valid integer' as 'a valid integer'."""
    return message.removeprefix("Input should be ")


def _show(value: object) -> str:
    """A short repr of `value` with its type, for 'got ...' messages."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _clean_loc(data: Any, loc: tuple[int | str, ...], missing: bool) -> KeyPath:
    """Keep the parts of pydantic's `loc` that are keys or indexes of `data` (drop union tags)."""
    key: list[str | int] = []
    node = data
    for n, part in enumerate(loc):
        is_key = isinstance(node, dict) and part in node
        is_index = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if is_key or is_index:
            node = node[part]
        elif not (missing and n == len(loc) - 1):
            continue
        key.append(part)
    return tuple(key)


def _model_at(root: type[BaseModel], key: KeyPath) -> type[BaseModel] | None:
    """Return the model that validates the mapping at `key` below `root`, if any."""
    annotation: Any = root
    for part in key:
        annotation = _step_into(annotation, part)
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _step_into(annotation: Any, part: str | int) -> Any:
    """The annotation of the value at `part` inside a value of type `annotation`."""
    for candidate in _members(annotation):
        origin = typing.get_origin(candidate)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BaseModel)
            and part in candidate.model_fields
        ):
            return candidate.model_fields[str(part)].annotation
        if origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    """Unwrap Annotated and unions into the plain types they allow."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]
