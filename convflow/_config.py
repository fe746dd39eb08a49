"""YAML/TOML/JSON config files -> frozen dataclasses, checked before anything runs.

`load_config` reads one file (`_config_source`), checks it against the schema
(`_config_schema`, pydantic models), resolves paths against the file's folder
and fills in defaults.  Every error names the file, the YAML line, the key
path and the fix.
"""

from __future__ import annotations

import glob
import os
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from convflow._config_errors import did_you_mean
from convflow._config_kernels import SPATIAL, build_kernels, check_kernels
from convflow._config_schema import ONE_SOURCE_OPS, ConfigModel, to_tuples, validate
from convflow._config_source import KeyPath, Source, format_key_path, read_source
from convflow.errors import ConfigError, InputNotFoundError

__all__ = [
    "CombineStage",
    "CompressionSpec",
    "Config",
    "ExecutionSpec",
    "FilterStage",
    "InputSpec",
    "KernelSpec",
    "OutputSpec",
    "Stage",
    "StepSpec",
    "build_kernels",
    "config_to_dict",
    "load_config",
]

_FORMAT_SUFFIXES = ((".ome.zarr", "ome-zarr"), (".zarr", "zarr"), (".tif", "tiff"), (".tiff", "tiff"))


@dataclass(frozen=True)
class InputSpec:
    """The image to filter: `path` is absolute; a glob stays a glob."""

    path: Path
    dataset: str | None = None
    axes: str | None = None
    chunks: tuple[int, ...] | None = None

    @property
    def is_glob(self) -> bool:
        """Whether `path` is a pattern (``*``, ``?`` or ``[``) over several files."""
        return _is_glob(str(self.path))

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
    """One filter step; `mode` is scipy's name (aliases resolved)."""

    kernel: str
    op: str = "convolve"
    mode: str = "reflect"
    cval: float = 0.0
    origin: int | tuple[int, ...] = 0
    method: str = "auto"


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
class OutputSpec:
    """Where to write a stage; `format` is given or read from the path's suffix."""

    stage: str
    path: Path
    format: str
    dtype: str | None = None
    chunks: tuple[int, ...] | None = None
    compression: CompressionSpec | None = None


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


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> Config:
    """Read and check a pipeline config file.

    Parameters
    ----------
    path : str or path-like
        A ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.  Relative paths
        inside it are read from the file's folder.
    check_files : bool, optional
        Also check that the input (or its glob) and kernel files exist, and
        that kernel files hold kernels.  Named kernels are built to check
        their parameters: with the ndim ``input.axes`` gives, or else with
        any ndim, so that only `build_kernels` refuses a kernel that fits
        some inputs but not the one read.

    Returns
    -------
    Config
        Frozen, with defaults filled in, absolute paths and canonical names.

    Raises
    ------
    convflow.errors.ConfigError
        A syntax error, unknown or missing key, wrong type, unknown name or a
        reference to something not defined; the message names the file, the
        line (YAML and JSON always, TOML mostly), the key path and the fix.
    convflow.errors.InputNotFoundError
        With `check_files`, the input does not exist or its glob matches no file.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "p.yaml").write_text(
    ...     "input: {path: data.zarr}\\n"
    ...     "kernels: {smooth: {type: gaussian, sigma: 1.5}}\\n"
    ...     "stages: [{name: smoothed, steps: [{kernel: smooth}]}]\\n"
    ...     "outputs: [{stage: smoothed, path: out.zarr}]\\n")
    >>> config = load_config(folder / "p.yaml", check_files=False)
    >>> config.stages[0]
    FilterStage(name='smoothed', source='input', steps=(StepSpec(kernel='smooth', op='convolve', \
mode='reflect', cval=0.0, origin=0, method='auto'),))
    >>> config.outputs[0].format, config.outputs[0].path == folder / "out.zarr"
    ('zarr', True)
    """
    source = read_source(path)
    model = validate(source)
    config = _from_model(model, source)
    if check_files:
        _check_input_exists(config)
    _check_outputs(config)
    axes = config.input.spatial_axes
    check_kernels(config, len(axes) if axes else None, files=check_files, probe=axes is None)
    return config


def _from_model(model: ConfigModel, source: Source) -> Config:
    """Resolve paths and defaults: the model as frozen dataclasses."""
    folder = source.path.parent.absolute()
    given = model.input
    input_spec = InputSpec(
        path=_resolve(folder, given.path),
        dataset=given.dataset,
        axes=given.axes,
        chunks=_tuple(given.chunks),
    )
    kernel_specs = []
    for name, kernel in model.kernels.items():
        params = tuple(sorted((k, to_tuples(v)) for k, v in (kernel.model_extra or {}).items()))
        kernel_specs.append(
            KernelSpec(
                name=name,
                type=kernel.type,
                params=params,
                values=kernel.values,  # type: ignore[arg-type]  # a tuple after validation
                file=None if kernel.file is None else _resolve(folder, kernel.file),
            )
        )
    stages: list[Stage] = []
    previous = "input"
    for stage in model.stages:
        if stage.combine is None:
            steps = tuple(
                StepSpec(s.kernel, s.op, s.mode, s.cval, to_tuples(s.origin), s.method)
                for s in stage.steps or ()
            )
            stages.append(FilterStage(stage.name, stage.source or previous, steps))
        else:
            c = stage.combine
            sources = tuple(c.sources) if c.sources is not None else (c.source or previous,)
            stages.append(CombineStage(stage.name, c.op, sources, c.factor, c.min, c.max))
        previous = stage.name
    outputs = []
    for i, output in enumerate(model.outputs):
        path = _resolve(folder, output.path)
        compression = output.compression
        outputs.append(
            OutputSpec(
                stage=output.stage,
                path=path,
                format=output.format or _format_from_name(source, i, path),
                dtype=output.dtype,
                chunks=_tuple(output.chunks),
                compression=None
                if compression is None
                else CompressionSpec(compression.codec, compression.level),
            )
        )
    run = model.execution
    execution = ExecutionSpec(
        **{f.name: to_tuples(getattr(run, f.name)) for f in fields(ExecutionSpec) if f.name != "scheduler"},
        scheduler=run.scheduler or ("distributed" if run.address is not None else "threads"),
    )
    return Config(input_spec, tuple(kernel_specs), tuple(stages), tuple(outputs), execution, source)


def _resolve(folder: Path, text: str) -> Path:
    """`text` as an absolute, normalised path; relative paths start at `folder`."""
    return Path(os.path.normpath(folder / os.path.expanduser(text)))


def _tuple(value: list[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _format_from_name(source: Source, index: int, path: Path) -> str:
    name = path.name.lower()
    for suffix, kind in _FORMAT_SUFFIXES:
        if name.endswith(suffix):
            return kind
    raise source.error(
        ("outputs", index, "path"),
        f"cannot tell the format of {path.name!r} from its name; end it in .zarr, .ome.zarr, .tif or "
        ".tiff, or give format: zarr, zarr-v2, ome-zarr or tiff",
    )


def _check_input_exists(config: Config) -> None:
    """Raise InputNotFoundError unless the input (or a file matching its glob) exists."""
    path = config.input.path
    where = config.where(("input", "path"))
    folder = (
        ""
        if config.source is None
        else f" Relative paths start at the config file's folder, {config.source.path.parent.absolute()}"
    )
    if config.input.is_glob:
        if not glob.glob(str(path)):
            raise InputNotFoundError(f"{where}: no file matches the glob {str(path)!r}.{folder}")
        return
    if not path.exists():
        hint = ""
        if path.parent.is_dir():
            hint = did_you_mean(path.name, sorted(p.name for p in path.parent.iterdir()))
        raise InputNotFoundError(f"{where}: no file or folder at {str(path)!r}.{hint}{folder}")


def _check_outputs(config: Config) -> None:
    """Refuse placeholders other than {stem}, repeated output paths and outputs inside the input."""
    seen: dict[Path, int] = {}
    for i, output in enumerate(config.outputs):
        where = config.where(("outputs", i, "path"))
        try:
            placeholders = [f for _, f, _, _ in string.Formatter().parse(str(output.path)) if f is not None]
        except ValueError as err:
            raise ConfigError(f"{where}: {err}; write braces only as {{stem}}") from err
        for placeholder in placeholders:
            if placeholder != "stem":
                hint = did_you_mean(placeholder, ["stem"])
                raise ConfigError(
                    f"{where}: unknown placeholder {{{placeholder}}}.{hint} The only placeholder is "
                    "{stem}, the name of each input file without its suffix"
                )
        if output.path in seen:
            raise ConfigError(f"{where}: outputs[{seen[output.path]}] already writes {str(output.path)!r}")
        seen[output.path] = i
        if not config.input.is_glob and output.path.is_relative_to(config.input.path):
            raise ConfigError(
                f"{where}: the output {str(output.path)!r} is the input or inside it; write it elsewhere"
            )


def config_to_dict(config: Config) -> dict[str, Any]:
    """Return the resolved config as plain JSON-able data, in the config-file schema.

    Defaults are written out and paths are absolute, so two configs that run
    the same pipeline give equal dicts, and loading the dict (saved as JSON)
    gives an equal `Config`.

    Parameters
    ----------
    config : Config
        From `load_config`.

    Returns
    -------
    dict
        Keys ``input``, ``kernels``, ``stages``, ``outputs``, ``execution``;
        tuples become lists, paths strings, and keys that are None are left out.
    """
    kernels = {}
    for spec in config.kernels:
        if spec.type is not None:
            kind: dict[str, Any] = {"type": spec.type}
        elif spec.values is not None:
            kind = {"values": spec.values}
        else:
            kind = {"file": spec.file}
        kernels[spec.name] = _plain({**kind, **dict(spec.params)})
    stages = []
    for stage in config.stages:
        if isinstance(stage, FilterStage):
            steps = [_plain(vars(step)) for step in stage.steps]
            stages.append({"name": stage.name, "source": stage.source, "steps": steps})
        else:
            combine: dict[str, Any] = {"op": stage.op}
            if stage.op in ONE_SOURCE_OPS:
                combine["source"] = stage.sources[0]
            else:
                combine["sources"] = stage.sources
            combine.update(factor=stage.factor, min=stage.min, max=stage.max)
            stages.append({"name": stage.name, "combine": _plain(combine)})
    return {
        "input": _plain(vars(config.input)),
        "kernels": kernels,
        "stages": stages,
        "outputs": [_plain(vars(output)) for output in config.outputs],
        "execution": _plain(vars(config.execution)),
    }


def _plain(value: Any) -> Any:
    """`value` as JSON-able data: dataclasses and dicts as dicts without None, tuples as lists."""
    if isinstance(value, CompressionSpec):
        value = vars(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
