"""Read a YAML, TOML or JSON config file and remember the line of every key."""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convflow.errors import ConfigError

KeyPath = tuple[str | int, ...]

SUFFIXES = {".yaml": "YAML", ".yml": "YAML", ".toml": "TOML", ".json": "JSON"}
# The deepest a config's data may nest: the schema's own deepest key is a kernel's values (6
# levels); anything deeper is a mistake, and far deeper would exhaust Python's recursion.
MAX_DEPTH = 32
# Python refuses to convert integers with more digits than this (sys.get_int_max_str_digits).
_LONG_INTEGER = re.compile(rf"\d{{{sys.get_int_max_str_digits() + 1},}}")


def format_key_path(key: KeyPath) -> str:
    """Write a key path the way a user reads it.

    Examples
    --------
    >>> format_key_path(("stages", 1, "steps", 0, "kernel"))
    'stages[1].steps[0].kernel'
    """
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass(frozen=True)
class Source:
    """A parsed config file: its data, and the 1-based line of each key path."""

    path: Path
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line(self, key: KeyPath) -> int | None:
        """Return the line of `key`, or of its deepest ancestor whose line is known."""
        for end in range(len(key), 0, -1):
            if key[:end] in self.lines:
                return self.lines[key[:end]]
        return None

    def where(self, key: KeyPath) -> str:
        """Return ``'name line N, key.path'``, the prefix of every config error."""
        line = self.line(key)
        text = self.path.name + (f" line {line}" if line is not None else "")
        return f"{text}, {format_key_path(key)}" if key else text

    def error(self, key: KeyPath, message: str) -> ConfigError:
        """Return a ConfigError whose message starts with where `key` is."""
        return ConfigError(f"{self.where(key)}: {message}")


def read_source(path: str | os.PathLike[str]) -> Source:
    """Parse the config file at `path` by its suffix; raise ConfigError on any syntax error."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(
            f"{path.name}: cannot tell the config format from the suffix {path.suffix!r}; "
            "name the file .yaml, .yml, .toml or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigError(f"{path.name}: no config file at {path.absolute()}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path.name}: cannot read the config file: {err}") from err
    reader = {"YAML": _read_yaml, "TOML": _read_toml, "JSON": _read_json}[kind]
    try:
        source = reader(path, text)
    except RecursionError as err:
        raise ConfigError(
            f"{path.name}: {kind} nested too deeply to read; a config nests at most {MAX_DEPTH} levels "
            "of mappings and lists"
        ) from err
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise _value_error(path, kind, text, err) from err
    _check_depth(source)
    if source.data is None:
        raise ConfigError(f"{path.name}: the file is empty; a config needs input, stages and outputs")
    if not isinstance(source.data, dict):
        raise source.error(
            (),
            f"the top level is a {type(source.data).__name__}; it must be a mapping with the keys "
            "input, kernels, stages, outputs and execution",
        )
    return source


def _value_error(path: Path, kind: str, text: str, err: ValueError) -> ConfigError:
    """A parser's ValueError (an integer too long to convert) as a ConfigError naming its line."""
    found = _LONG_INTEGER.search(text)
    if found is None:
        return ConfigError(f"{path.name}: {kind} cannot be read: {err}")
    line = text.count("\n", 0, found.start()) + 1
    return ConfigError(
        f"{path.name} line {line}: an integer of {len(found.group())} digits; no config value needs "
        f"more than {sys.get_int_max_str_digits()}: shorten it"
    )


def _check_depth(source: Source) -> None:
    """Refuse data nested deeper than MAX_DEPTH; a value shared through YAML aliases is walked once."""
    deepest: dict[int, int] = {}  # id of a container -> the depth it was seen at
    pending: list[tuple[Any, KeyPath]] = [(source.data, ())]
    while pending:
        value, key = pending.pop()
        if not isinstance(value, dict | list):
            continue
        if len(key) >= MAX_DEPTH:
            raise source.error(
                key[:2],
                f"nests deeper than {MAX_DEPTH} levels of mappings and lists; no config key needs that",
            )
        if deepest.get(id(value), -1) >= len(key):
            continue
        deepest[id(value)] = len(key)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        pending += [(item, (*key, name)) for name, item in items]


def _read_yaml(path: Path, text: str) -> Source:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        if isinstance(err, yaml.reader.ReaderError):
            # A character YAML forbids: PyYAML gives its position on a second line of its message.
            start = text.rfind("\n", 0, err.position) + 1
            line_number = text.count("\n", 0, err.position)
            mark = yaml.Mark(path.name, err.position, line_number, err.position - start, None, None)
            problem = f"the character {chr(err.character)!r} (#x{err.character:04x}) is not allowed in YAML"
        where = f"{path.name} line {mark.line + 1}" if mark is not None else path.name
        context = getattr(err, "context", None)
        detail = f"{problem} ({context})" if context else problem
        column = f", column {mark.column + 1}" if mark is not None else ""
        line = text.splitlines()[mark.line] if mark is not None and mark.line < len(text.splitlines()) else ""
        if "{" in line.split(":", 1)[-1] and "{stem}" in line:
            detail += "; a value with {stem} inside {...} must be quoted: quote it as 'out/{stem}.tif'"
        raise ConfigError(f"{where}: YAML syntax error{column}: {detail}") from err
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _walk_yaml(path, node, (), lines, set())
    return Source(path, data, lines)


def _walk_yaml(path: Path, node: yaml.Node, key: KeyPath, lines: dict[KeyPath, int], seen: set[int]) -> int:
    """Record the line of every key and item under `node`; refuse duplicate keys.

    A node reached again through a YAML alias is not walked again: keys below
    an alias take the line of the alias (`Source.line` falls back to the
    nearest ancestor), so nine levels of nine aliases cost 81 visits, not
    9**9.  Returns the number of nodes walked.
    """
    if id(node) in seen or len(key) > MAX_DEPTH:
        return 0
    seen.add(id(node))
    visited = 1
    if isinstance(node, yaml.MappingNode):
        names: dict[object, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if name is None or name == "<<":
                continue
            line = key_node.start_mark.line + 1
            if name in names:
                raise ConfigError(
                    f"{path.name} line {line}, {format_key_path((*key, name))}: the key {name!r} appears "
                    f"twice (lines {names[name]} and {line}); keep one"
                )
            names[name] = line
            lines[(*key, name)] = line
            visited += _walk_yaml(path, value_node, (*key, name), lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*key, index)] = item.start_mark.line + 1
            visited += _walk_yaml(path, item, (*key, index), lines, seen)
    return visited


def _read_json(path: Path, text: str) -> Source:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path.name} line {err.lineno}: JSON syntax error, column {err.colno}: {err.msg}"
        ) from err
    # JSON is YAML flow syntax, so the YAML composer finds the lines (and duplicate keys).
    lines: dict[KeyPath, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        node = None
    if node is not None:
        _walk_yaml(path, node, (), lines, set())
    return Source(path, data, lines)


_TOML_LINE_COLUMN = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOML_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_TOML_KEY = rf"{_TOML_KEY_PART}(?:\s*\.\s*{_TOML_KEY_PART})*"
_TOML_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_TOML_KEY})\s*\]\]?\s*(?:#.*)?$")
_TOML_ASSIGN = re.compile(rf"^\s*({_TOML_KEY})\s*=")


def _read_toml(path: Path, text: str) -> Source:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = _TOML_LINE_COLUMN.search(message)
        if found:
            where = f"{path.name} line {found.group(1)}"
            detail = f", column {found.group(2)}: {_TOML_LINE_COLUMN.sub('', message).strip()}"
        else:
            where, detail = path.name, f": {message}"
        raise ConfigError(f"{where}: TOML syntax error{detail}") from err
    return Source(path, data, _toml_lines(text))


def _split_toml_key(text: str) -> list[str]:
    """Split a dotted TOML key into its parts, unquoting quoted parts."""
    parts = re.findall(_TOML_KEY_PART, text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def _toml_lines(text: str) -> dict[KeyPath, int]:
    """Map key paths to lines from TOML headers and ``key =`` lines.

    Keys inside inline tables and arrays get the line of the key that holds
    them, which is good enough for an error message.
    """
    lines: dict[KeyPath, int] = {}
    counts: dict[KeyPath, int] = {}  # tables in each array of tables
    table: KeyPath = ()

    def resolve(parts: list[str]) -> KeyPath:
        key: KeyPath = ()
        for part in parts:
            key = (*key, part)
            if key in counts:
                key = (*key, counts[key] - 1)
        return key

    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(line)
        if header:
            parts = _split_toml_key(header.group(2))
            if header.group(1) == "[[":
                array = (*resolve(parts[:-1]), parts[-1])
                counts[array] = counts.get(array, 0) + 1
                lines.setdefault(array, number)
                table = (*array, counts[array] - 1)
            else:
                table = resolve(parts)
            lines[table] = number
            continue
        assign = _TOML_ASSIGN.match(line)
        if assign:
            key = table
            for part in _split_toml_key(assign.group(1)):
                key = (*key, part)
                lines.setdefault(key, number)
    return lines
