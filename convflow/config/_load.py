"""YAML/TOML/JSON config files -> frozen dataclasses, checked before anything runs.

`load_config` reads one file (`_source`), checks it against the schema
(`_schema`, pydantic models), and turns it into the dataclasses of `_model`,
with paths resolved against the file's folder and defaults filled in.  Every
error names the file, the YAML line, the key path and the fix.
"""

from __future__ import annotations

import glob
import os
import string
import urllib.parse
from dataclasses import fields
from pathlib import Path
from typing import Any

from convflow.config._errors import did_you_mean
from convflow.config._kernels import check_kernels
from convflow.config._model import (
    CombineStage,
    CompressionSpec,
    Config,
    ExecutionSpec,
    FilterStage,
    InputSpec,
    KernelSpec,
    OutputSpec,
    PyramidSpec,
    Stage,
    StepSpec,
    is_url,
    path_name,
)
from convflow.config._schema import (
    OME_FORMATS,
    ONE_SOURCE_OPS,
    SHARDED_FORMATS,
    ConfigModel,
    to_tuples,
    validate,
)
from convflow.config._source import Source, read_source
from convflow.errors import ConfigError, InputNotFoundError

_FORMAT_SUFFIXES = ((".ome.zarr", "ome-zarr"), (".zarr", "zarr"), (".tif", "tiff"), (".tiff", "tiff"))


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
mode='reflect', cval=0.0, origin=0, method='auto', convention='ndimage', shape='same'),))
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
        storage_options=given.storage_options,
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
                StepSpec(s.kernel, s.op, s.mode, s.cval, to_tuples(s.origin), s.method, s.convention, s.shape)
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
        compression, pyramid = output.compression, output.pyramid
        fmt = output.format or _format_from_name(source, i, path)
        for key in ("pyramid", "scale", "units"):
            if getattr(output, key) is not None and fmt not in OME_FORMATS:
                raise source.error(
                    ("outputs", i, key),
                    f"{key} applies to OME-Zarr outputs, and {path_name(path)!r} is written as {fmt}; "
                    f"remove {key}, or write a .ome.zarr (format: ome-zarr or ome-zarr-v0.5)",
                )
        _check_shards(source, i, output.shards, output.chunks, fmt)
        outputs.append(
            OutputSpec(
                stage=output.stage,
                path=path,
                format=fmt,
                dtype=output.dtype,
                chunks=_tuple(output.chunks),
                shards=_tuple(output.shards),
                compression=None
                if compression is None
                else CompressionSpec(compression.codec, compression.level),
                pyramid=None if pyramid is None else PyramidSpec(pyramid.levels, pyramid.method),
                scale=None if output.scale is None else tuple(output.scale),
                units=None if output.units is None else tuple(output.units),
                storage_options=output.storage_options,
            )
        )
    run = model.execution
    execution = ExecutionSpec(
        **{f.name: to_tuples(getattr(run, f.name)) for f in fields(ExecutionSpec) if f.name != "scheduler"},
        scheduler=run.scheduler or ("distributed" if run.address is not None else "threads"),
    )
    return Config(input_spec, tuple(kernel_specs), tuple(stages), tuple(outputs), execution, source)


def _check_shards(
    source: Source, index: int, shards: list[int] | None, chunks: list[int] | None, fmt: str
) -> None:
    """Refuse ``outputs[index].shards`` on a format without shards, or not made of whole chunks."""
    if shards is None:
        return
    key = ("outputs", index, "shards")
    if fmt not in SHARDED_FORMATS:
        fix = "format: ome-zarr-v0.5" if fmt == "ome-zarr" else "zarr v3 (a .zarr path, format: zarr)"
        raise source.error(
            key,
            f"shards applies to zarr v3 outputs, and this output is written as {fmt}; remove shards, "
            f"or write {fix}",
        )
    if chunks is None:
        return  # the chunks come from the input: checked against them once known (io.check_output)
    if len(shards) != len(chunks):
        raise source.error(
            key, f"shards has {len(shards)} entries but chunks has {len(chunks)}; give one per axis"
        )
    if any(s % c for s, c in zip(shards, chunks, strict=True)):
        example = [max(1, round(s / c)) * c for s, c in zip(shards, chunks, strict=True)]
        raise source.error(
            key,
            f"shards {shards} is not a whole number of chunks {chunks} along every axis; a shard holds "
            f"whole chunks, e.g. shards: {example}",
        )


def _resolve(folder: Path, text: str) -> Path | str:
    """`text` as an absolute, normalised path; relative paths start at `folder`; a URL stays as given.

    A ``file://`` URL is the local path it names.
    """
    if is_url(text):
        return text
    if text.lower().startswith("file://"):
        text = urllib.parse.unquote(urllib.parse.urlsplit(text).path) or "/"
    return Path(os.path.normpath(folder / os.path.expanduser(text)))


def _tuple(value: list[int] | None) -> tuple[int, ...] | None:
    return None if value is None else tuple(value)


def _format_from_name(source: Source, index: int, path: Path | str) -> str:
    name = path_name(path).lower()
    for suffix, kind in _FORMAT_SUFFIXES:
        if name.endswith(suffix):
            return kind
    raise source.error(
        ("outputs", index, "path"),
        f"cannot tell the format of {path_name(path)!r} from its name; end it in .zarr, .ome.zarr, .tif or "
        ".tiff, or give format: zarr, zarr-v2, ome-zarr, ome-zarr-v0.5 or tiff",
    )


# Linux's limits (limits.h): the longest name in a folder, and the longest path, in bytes.
NAME_MAX, PATH_MAX = 255, 4096


def _check_path_length(where: str, path: Path) -> None:
    """Refuse a path no file system can hold: a name over NAME_MAX bytes, or the whole over PATH_MAX.

    Examples
    --------
    >>> _check_path_length("input.path", Path("/data/" + "a" * 300))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.ConfigError: input.path: the name 'aaaaaaaaaaaaaaaaaaaaaaaa...' is 300 bytes long; ...
    """
    longest = max(path.parts, key=lambda part: len(os.fsencode(part)))
    size = len(os.fsencode(longest))
    if size > NAME_MAX:
        raise ConfigError(
            f"{where}: the name {longest[:24] + '...'!r} is {size} bytes long; file systems allow names of "
            f"at most {NAME_MAX}: shorten it"
        )
    size = len(os.fsencode(str(path)))
    if size > PATH_MAX:
        raise ConfigError(
            f"{where}: the path {str(path)[:40] + '...'!r} is {size} bytes long; file systems allow paths "
            f"of at most {PATH_MAX}: shorten it"
        )


def _check_input_exists(config: Config) -> None:
    """Raise InputNotFoundError unless the input (or a file matching its glob) exists."""
    path = config.input.path
    where = config.where(("input", "path"))
    if not isinstance(path, Path):
        return  # a URL: its store is asked when the input is opened
    _check_path_length(where, path)
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
    seen: dict[Path | str, int] = {}
    for i, output in enumerate(config.outputs):
        where = config.where(("outputs", i, "path"))
        if isinstance(output.path, Path):
            _check_path_length(where, output.path)
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
        if not isinstance(output.path, Path) or not isinstance(config.input.path, Path):
            seen[output.path] = i  # URLs: compared in their normal form by convflow.io.check_output
            continue
        for other, j in seen.items():
            if not isinstance(other, Path):
                continue
            # Replacing the outer output (--overwrite) would delete the inner one with it.
            for (inner, a), (outer, b) in (((output.path, i), (other, j)), ((other, j), (output.path, i))):
                if inner.is_relative_to(outer) or _real(inner).is_relative_to(_real(outer)):
                    raise ConfigError(
                        f"{where}: outputs[{a}] {str(inner)!r} lies inside outputs[{b}] {str(outer)!r}; "
                        "writing or replacing the outer output would destroy it: write the two side by side"
                    )
        seen[output.path] = i
        if not config.input.is_glob and output.path.is_relative_to(config.input.path):
            raise ConfigError(
                f"{where}: the output {str(output.path)!r} is the input or inside it; write it elsewhere"
            )


def _real(path: Path) -> Path:
    """`path` with its symbolic links resolved (those that exist)."""
    return Path(os.path.realpath(path))


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
            steps = [_step_dict(step) for step in stage.steps]
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
    if isinstance(value, CompressionSpec | PyramidSpec):
        value = vars(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


# Step keys added later (#13), left out at their defaults: the resolved config
# of a pipeline that does not use them stays what it was, so outputs written
# before them still resume.
_LATER_STEP_DEFAULTS = {"convention": "ndimage", "shape": "same"}


def _step_dict(step: StepSpec) -> dict[str, Any]:
    """A step as plain data, without the later keys at their defaults."""
    plain = _plain(vars(step))
    return {k: v for k, v in plain.items() if _LATER_STEP_DEFAULTS.get(k, object()) != v}
