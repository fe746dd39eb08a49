"""The frozen dataclasses a config becomes: input, kernels, stages, outputs and execution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convflow.config._source import KeyPath, Source, format_key_path
from convflow.engine import SPATIAL


def is_glob(text: str) -> bool:
    """Return whether `text` is a pattern (``*``, ``?`` or ``[``) over several files."""
    return any(c in text for c in "*?[")


def is_url(text: Any) -> bool:
    """Return whether `text` is a URL other than ``file://`` (``s3://``, ``https://``...): kept as given.

    Which schemes can be read is `convflow.io`'s to say, when the path is opened.

    Examples
    --------
    >>> is_url("s3://bucket/a.zarr"), is_url("file:///data/a.zarr"), is_url("data/a.zarr")
    (True, False, False)
    """
    found = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", str(text))
    return found is not None and found.group(1).lower() != "file"


def path_name(path: Path | str) -> str:
    """The last part of a path or URL, e.g. ``a.zarr`` for ``s3://bucket/a.zarr/``."""
    return path.name if isinstance(path, Path) else str(path).rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class InputSpec:
    """The image to filter: `path` is absolute (a URL stays a URL, as a str); a glob stays a glob.

    `storage_options` are those of a URL's store (they may hold credentials).
    """

    path: Path | str
    dataset: str | None = None
    axes: str | None = None
    chunks: tuple[int, ...] | None = None
    storage_options: dict[str, Any] | None = field(default=None, repr=False)  # may hold credentials

    @property
    def is_glob(self) -> bool:
        """Whether `path` is a pattern (``*``, ``?`` or ``[``) over several files (a URL is none)."""
        return not is_url(self.path) and is_glob(str(self.path))

    @property
    def spatial_axes(self) -> str | None:
        """The x/y/z letters of `axes`, in their order, or None when axes are not given."""
        return None if self.axes is None else "".join(a for a in self.axes if a in SPATIAL)


@dataclass(frozen=True)
class KernelSpec:
    """A named kernel: one of `type` (with `params`), `values` or `file` is set."""

    name: str
    type: str | None = None
    params: tuple[tuple[str, Any], ...] = ()  # sorted by name; lists become tuples
    values: tuple[Any, ...] | None = None
    file: Path | None = None


@dataclass(frozen=True)
class StepSpec:
    """One filter step; `mode` is scipy's name (aliases resolved).

    `convention` is ``ndimage`` (scipy.ndimage's centring) or ``signal``
    (scipy.signal's and numpy's: even kernel axes centred one sample
    earlier when convolving); `shape` is ``same``, ``full`` or ``valid``.
    """

    kernel: str
    op: str = "convolve"
    mode: str = "reflect"
    cval: float = 0.0
    origin: int | tuple[int, ...] = 0
    method: str = "auto"
    convention: str = "ndimage"
    shape: str = "same"


@dataclass(frozen=True)
class FilterStage:
    """A stage that applies `steps` in sequence to `source` (``'input'`` or an earlier stage)."""

    name: str
    source: str
    steps: tuple[StepSpec, ...]

    @property
    def sources(self) -> tuple[str, ...]:
        """The stages (or ``'input'``) this stage reads."""
        return (self.source,)


@dataclass(frozen=True)
class CombineStage:
    """A stage that combines earlier stages element-wise with `op`."""

    name: str
    op: str
    sources: tuple[str, ...]
    factor: float | None = None
    min: float | None = None
    max: float | None = None


Stage = FilterStage | CombineStage


@dataclass(frozen=True)
class CompressionSpec:
    """An output codec and its level (None: the codec's default)."""

    codec: str
    level: int | None = None


@dataclass(frozen=True)
class PyramidSpec:
    """OME-Zarr resolution levels: how many in all, and how each is made (mean or gaussian)."""

    levels: int
    method: str = "mean"


@dataclass(frozen=True)
class OutputSpec:
    """Where to write a stage; `format` is given or read from the path's suffix.

    `pyramid`, `scale` and `units` apply to OME-Zarr outputs; None: no pyramid,
    and the input's pixel sizes and units.  `shards` (zarr v3 and OME-Zarr
    0.5 outputs) is the shard shape, a multiple of `chunks`; None: unsharded.
    """

    stage: str
    path: Path | str  # a URL stays a URL, as a str
    format: str
    dtype: str | None = None
    chunks: tuple[int, ...] | None = None
    compression: CompressionSpec | None = None
    pyramid: PyramidSpec | None = None
    shards: tuple[int, ...] | None = None
    scale: tuple[float, ...] | None = None
    units: tuple[str | None, ...] | None = None
    storage_options: dict[str, Any] | None = field(default=None, repr=False)  # may hold credentials


@dataclass(frozen=True)
class ExecutionSpec:
    """How to run: the scheduler and the keys that scheduler reads (others are None)."""

    scheduler: str = "threads"
    address: str | None = None
    workers: int | None = None
    threads: int | None = None
    memory_limit: str | int | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    cores: int | None = None
    memory: str | int | None = None
    job_extra_directives: tuple[str, ...] | None = None
    jobs: int | None = None


@dataclass(frozen=True)
class Config:
    """A checked pipeline: equal for the same pipeline written in YAML, TOML or JSON."""

    input: InputSpec
    kernels: tuple[KernelSpec, ...]
    stages: tuple[Stage, ...]
    outputs: tuple[OutputSpec, ...]
    execution: ExecutionSpec = field(default_factory=ExecutionSpec)
    source: Source | None = field(default=None, compare=False, repr=False)

    def kernel(self, name: str) -> KernelSpec:
        """Return the kernel called `name`."""
        return next(k for k in self.kernels if k.name == name)

    def stage(self, name: str) -> Stage:
        """Return the stage called `name`."""
        return next(s for s in self.stages if s.name == name)

    def where(self, key: KeyPath) -> str:
        """Return ``'file line N, key.path'`` for messages about `key`."""
        return self.source.where(key) if self.source is not None else format_key_path(key)
