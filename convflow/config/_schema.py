"""The config schema as pydantic models: keys, types, names and references between sections.

`validate` checks a parsed file against `ConfigModel`; `_errors` turns
pydantic's errors into ConfigErrors, and `_config` turns the models into
frozen dataclasses and resolves paths.
"""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)

from convflow.config._errors import KeyedError, did_you_mean, translate
from convflow.config._source import KeyPath, Source
from convflow.engine import (
    COMBINE_OPS,
    CONVENTIONS,
    METHODS,
    ONE_SOURCE_OPS,
    SHAPES,
    parse_mode,
    parse_result_dtype,
)
from convflow.engine import OPS as STEP_OPS

# Combine ops of several sources: config asks for 2 or more stages there.
MANY_SOURCE_OPS = tuple(op for op in COMBINE_OPS if op not in ONE_SOURCE_OPS)
FORMATS = ("zarr", "zarr-v2", "ome-zarr", "ome-zarr-v0.5", "tiff")
OME_FORMATS = ("ome-zarr", "ome-zarr-v0.5")
# The formats stored as zarr v3, the only one with shards (io._target.SHARDED_FORMATS).
SHARDED_FORMATS = ("zarr", "ome-zarr-v0.5")
# The ways io makes an OME-Zarr pyramid level (io._ome.PYRAMID_METHODS; config imports no io).
PYRAMID_METHODS = ("mean", "gaussian")
SCHEDULERS = ("threads", "processes", "synchronous", "distributed", "slurm", "pbs")
_JOBQUEUE_KEYS = frozenset(
    {"queue", "account", "walltime", "cores", "memory", "job_extra_directives", "jobs"}
)
# Which execution keys each scheduler reads; any other key is a mistake.
EXECUTION_KEYS = {
    "synchronous": frozenset(),
    "threads": frozenset({"workers"}),
    "processes": frozenset({"workers"}),
    "distributed": frozenset({"address", "workers", "threads", "memory_limit"}),
    "slurm": _JOBQUEUE_KEYS,
    "pbs": _JOBQUEUE_KEYS,
}
_LOCAL_CLUSTER_KEYS = ("workers", "threads", "memory_limit")
_BYTES = re.compile(r"^\s*\d+(\.\d+)?\s*([kKMGTPE]i?B?|[kKMGTPE]i?b?|B)?\s*$")


def _choice(options: Sequence[str], what: str) -> AfterValidator:
    """A validator that accepts only `options` and suggests the closest one."""

    def check(value: str) -> str:
        if value not in options:
            raise ValueError(
                f"{value!r} is not {what}.{did_you_mean(value, options)} Valid: {', '.join(options)}"
            )
        return value

    return AfterValidator(check)


def _not_bool(value: object) -> object:
    """Refuse true/false where a number belongs (pydantic would read it as 1/0)."""
    if isinstance(value, bool):
        raise ValueError(f"got {value}, a boolean; give a number")
    return value


def _kernel_type(value: str) -> str:
    """Accept only the names `convflow.kernels.names` lists."""
    from convflow import kernels  # late: kernels is only needed once a config names one

    names = sorted(kernels.names())
    if value not in names:
        raise ValueError(
            f"no kernel type {value!r}.{did_you_mean(value, names)} Known types: {', '.join(names)}"
        )
    return value


def _kernel_values(values: list[Any]) -> tuple[Any, ...]:
    """Check a nested list of weights and return it as nested tuples of floats."""
    from convflow.kernels import MAX_WEIGHTS  # late, as in _kernel_type

    # The shape along the first entries, checked before numpy expands the lists: YAML aliases let a
    # few lines of text stand for billions of weights.
    shape: list[int] = []
    first: Any = values
    while isinstance(first, list | tuple) and len(shape) <= 3:
        shape.append(len(first))
        first = first[0] if first else None
    if len(shape) > 3:
        raise ValueError("values nests lists more than 3 deep; a kernel has 1, 2 or 3 axes")
    if math.prod(shape) > MAX_WEIGHTS:
        raise ValueError(
            f"values has shape {tuple(shape)}: {math.prod(shape):,} weights, more than the limit of "
            f"{MAX_WEIGHTS:,}; use a smaller kernel"
        )
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise ValueError(
            "values must be a nested list of numbers with rows of equal length, "
            "e.g. [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]"
        ) from err
    if not 1 <= array.ndim <= 3 or array.size == 0:
        raise ValueError(f"values has shape {array.shape}; a kernel has 1, 2 or 3 axes, none of length 0")
    if not np.isfinite(array).all():
        raise ValueError("values contains inf or nan; every weight must be a finite number")
    return tuple(to_tuples(array.tolist()))


def to_tuples(value: Any) -> Any:
    """Turn nested lists into nested tuples, so frozen objects stay hashable."""
    return tuple(to_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _axes(value: str) -> str:
    """Return axis letters in lower case; refuse repeats and a missing spatial axis."""
    value = value.lower()
    if not value.isalpha() or not value.isascii():
        raise ValueError(f"axes={value!r}: give one letter per axis, e.g. 'zyx' or 'tcyx'")
    if len(set(value)) != len(value):
        raise ValueError(f"axes={value!r} repeats a letter; each axis needs its own letter")
    spatial = [a for a in value if a in "xyz"]
    if not spatial:
        raise ValueError(f"axes={value!r} has no spatial axis; label them x, y (and z), e.g. 'tyx'")
    return value


def _dtype(value: str) -> str:
    """Return numpy's name for a result dtype (``'f4'`` -> ``'float32'``), checked as the engine checks it."""
    return parse_result_dtype(value, np.dtype(np.float64)).name


def _byte_size(value: str | int) -> str | int:
    """Accept a byte count, ``'auto'`` or a size such as ``'4GiB'``, unchanged."""
    if isinstance(value, str) and value != "auto" and not _BYTES.match(value):
        raise ValueError(f"{value!r} is not a size; write e.g. 4GiB, 500MB or a number of bytes")
    return value


Name = Annotated[str, Field(min_length=1)]
Int = StrictInt
PositiveInt = Annotated[StrictInt, Field(gt=0)]
Float = Annotated[float, BeforeValidator(_not_bool)]
Chunks = Annotated[list[PositiveInt], Field(min_length=1)]
ByteSize = Annotated[str | PositiveInt, AfterValidator(_byte_size)]


class _Model(BaseModel):
    """A config mapping: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InputModel(_Model):
    """``input``: the image to filter."""

    path: Name = Field(
        description="the image: a zarr array or group, a TIFF, an HDF5 file, a .npy file or a glob"
    )
    # An OME level is often written as a bare number.
    dataset: Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)] | None = None
    axes: Annotated[str, AfterValidator(_axes)] | None = None
    chunks: Chunks | None = None
    # For a URL: the options of its store (endpoint_url, anon, profile, region...); never recorded.
    storage_options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _chunks_match_axes(self) -> InputModel:
        if self.axes is None or self.chunks is None or len(self.chunks) == len(self.axes):
            return self
        if glob.has_magic(self.path) and len(self.chunks) == len(self.axes) + 1:
            # A glob's axes may name each file's axes; its chunks count the axis over the files too.
            return self
        files = (
            " (for a glob: one more, first, for the axis over the files)" if glob.has_magic(self.path) else ""
        )
        raise KeyedError(
            ("chunks",),
            f"chunks has {len(self.chunks)} entries but axes={self.axes!r} has {len(self.axes)}; "
            f"give one chunk size per axis{files}",
        )


class KernelModel(BaseModel):
    """``kernels.<name>``: a named kernel with its parameters, a nested list, or a file."""

    # Named kernels take their own parameters (sigma, size, axis...): kernels.get checks them.
    model_config = ConfigDict(extra="allow", frozen=True)

    type: Annotated[str, AfterValidator(_kernel_type)] | None = None
    values: Annotated[list[Any], AfterValidator(_kernel_values)] | None = None
    file: Name | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> KernelModel:
        given = [key for key in ("type", "values", "file") if getattr(self, key) is not None]
        if len(given) != 1:
            got = f"got {' and '.join(given)}" if given else "got none of them"
            raise ValueError(
                "a kernel needs exactly one of type (a named kernel, e.g. {type: gaussian, sigma: 1.5}), "
                f"values (a nested list) or file (a .npy, .txt or .csv file); {got}"
            )
        if self.type is None:
            for key in self.model_extra or {}:
                if key != "normalize":
                    valid = ["normalize", given[0]]
                    raise KeyedError(
                        (key,),
                        f"unknown key {key!r}.{did_you_mean(key, valid)} A kernel given by {given[0]} takes "
                        "only normalize; parameters such as sigma belong to kernels given by type",
                    )
            normalize = (self.model_extra or {}).get("normalize", False)
            if not isinstance(normalize, bool):
                raise KeyedError(("normalize",), f"got {normalize!r}; normalize is true or false")
        return self


class StepModel(_Model):
    """``stages[i].steps[j]``: one kernel applied by convolve or correlate."""

    kernel: Name = Field(description="the name of a kernel from the kernels section")
    op: Annotated[str, _choice(STEP_OPS, "a step op")] = "convolve"
    mode: Annotated[str, AfterValidator(parse_mode)] = "reflect"
    cval: Float = 0.0
    origin: Int | Annotated[list[Int], Field(min_length=1)] = 0
    method: Annotated[str, _choice(METHODS, "a method")] = "auto"
    convention: Annotated[str, _choice(CONVENTIONS, "a convention")] = "ndimage"
    shape: Annotated[str, _choice(SHAPES, "an output shape")] = "same"

    @model_validator(mode="after")
    def _origin_fits(self) -> StepModel:
        # The origin shifts scipy.ndimage's centre; scipy.signal has none, and
        # full and valid results do not depend on where the centre sits.
        if self.origin != 0 and not (isinstance(self.origin, list) and not any(self.origin)):
            if self.convention == "signal":
                raise KeyedError(
                    ("origin",),
                    f"origin={self.origin} shifts scipy.ndimage's centre, but convention: signal centres "
                    "as scipy.signal does; remove origin, or use convention: ndimage",
                )
            if self.shape != "same":
                raise KeyedError(
                    ("origin",),
                    f"origin={self.origin} does not change a {self.shape} result, which holds every "
                    "value the kernel reaches (full) or only those that read no boundary (valid); "
                    "remove origin",
                )
        return self


class CombineModel(_Model):
    """``stages[i].combine``: an element-wise op on earlier stages."""

    op: Annotated[str, _choice(COMBINE_OPS, "a combine op")] = Field(
        description=f"one of {', '.join(COMBINE_OPS)}"
    )
    sources: list[Name] | None = None
    source: Name | None = None
    factor: Float | None = None
    min: Float | None = None
    max: Float | None = None

    @model_validator(mode="after")
    def _fits_op(self) -> CombineModel:
        op = self.op
        if op in MANY_SOURCE_OPS:
            if self.source is not None:
                raise KeyedError(("source",), f"{op} combines 2 or more stages; write sources: [a, b]")
            if self.sources is None:
                raise ValueError(f"missing required key 'sources': {op} combines a list of 2 or more stages")
            if len(self.sources) < 2:
                raise KeyedError(
                    ("sources",), f"{op} needs 2 or more sources, got {len(self.sources)}: {self.sources}"
                )
        elif self.sources is not None:
            raise KeyedError(
                ("sources",),
                f"{op} reads one stage, got sources: {self.sources}; write source: <stage> instead "
                "(or leave it out to read the previous stage)",
            )
        for key, owner in (("factor", "scale"), ("min", "clip"), ("max", "clip")):
            if getattr(self, key) is not None and op != owner:
                raise KeyedError((key,), f"{key} belongs to op {owner}, not {op}; remove it")
        if op == "scale" and self.factor is None:
            raise ValueError("missing required key 'factor': scale multiplies by factor")
        if op == "clip":
            if self.min is None and self.max is None:
                raise ValueError("clip needs min, max or both")
            if self.min is not None and self.max is not None and self.min > self.max:
                raise KeyedError(("min",), f"min={self.min} is greater than max={self.max}")
        return self


class StageModel(_Model):
    """``stages[i]``: steps applied to one source, or a combine."""

    name: Name = Field(description="the stage's name, used by later stages and outputs")
    source: Name | None = None
    steps: Annotated[list[StepModel], Field(min_length=1)] | None = None
    combine: CombineModel | None = None

    @model_validator(mode="after")
    def _steps_or_combine(self) -> StageModel:
        if (self.steps is None) == (self.combine is None):
            both = "both" if self.steps is not None else "neither"
            raise ValueError(
                f"a stage has steps (a list of kernels to apply) or combine (an op on stages), got {both}"
            )
        if self.combine is not None and self.source is not None:
            raise KeyedError(
                ("source",), "a combine stage reads combine.source or combine.sources; move source there"
            )
        return self


class CompressionModel(_Model):
    """``outputs[i].compression``."""

    codec: Name = Field(description="e.g. zstd, gzip, zlib or lzw")
    level: Int | None = None


class PyramidModel(_Model):
    """``outputs[i].pyramid``: the resolution levels of an OME-Zarr output."""

    levels: PositiveInt = Field(description="levels in all, full resolution included (1: none added)")
    method: Annotated[str, _choice(PYRAMID_METHODS, "a pyramid method")] = "mean"


class OutputModel(_Model):
    """``outputs[i]``: a stage and where to write it."""

    stage: Name = Field(description="the name of the stage to write")
    path: Name = Field(description="where to write it, e.g. out/result.zarr")
    format: Annotated[str, _choice(FORMATS, "an output format")] | None = None
    dtype: Annotated[str, AfterValidator(_dtype)] | None = None
    chunks: Chunks | None = None
    # zarr v3 and OME-Zarr 0.5 only, whole chunks per axis (checked once the format is known, in _load).
    shards: Chunks | None = None
    compression: CompressionModel | None = None
    # OME-Zarr only (checked once the format is known, in _load).
    pyramid: PyramidModel | None = None
    scale: Annotated[list[Annotated[Float, Field(gt=0)]], Field(min_length=1)] | None = None
    units: Annotated[list[str | None], Field(min_length=1)] | None = None
    storage_options: dict[str, Any] | None = None


class ExecutionModel(_Model):
    """``execution``: the scheduler and the keys it reads."""

    scheduler: Annotated[str, _choice(SCHEDULERS, "a scheduler")] | None = None
    address: Name | None = None
    workers: PositiveInt | None = None
    threads: PositiveInt | None = None
    memory_limit: ByteSize | None = None
    queue: Name | None = None
    account: Name | None = None
    walltime: Name | None = None
    cores: PositiveInt | None = None
    memory: ByteSize | None = None
    job_extra_directives: list[str] | None = None
    jobs: PositiveInt | None = None

    @model_validator(mode="after")
    def _keys_fit_scheduler(self) -> ExecutionModel:
        given = [
            key for key in type(self).model_fields if key != "scheduler" and getattr(self, key) is not None
        ]
        # An address alone means: use that running scheduler.
        scheduler = self.scheduler or ("distributed" if self.address is not None else "threads")
        for key in given:
            if key not in EXECUTION_KEYS[scheduler]:
                users = [s for s, keys in EXECUTION_KEYS.items() if key in keys]
                raise KeyedError(
                    (key,),
                    f"{key} does not apply to scheduler {scheduler!r}; it is read by scheduler "
                    f"{' or '.join(users)}. Keys for {scheduler!r}: "
                    + (", ".join(sorted(EXECUTION_KEYS[scheduler])) or "none"),
                )
        if self.address is not None:
            for key in _LOCAL_CLUSTER_KEYS:
                if getattr(self, key) is not None:
                    raise KeyedError(
                        (key,),
                        f"{key} sets up a local cluster, but address={self.address!r} uses a running "
                        "scheduler; remove one of them",
                    )
        return self


class ConfigModel(_Model):
    """The whole file; checks that names refer to kernels and earlier stages."""

    input: InputModel = Field(description="the image to filter: {path: ...}")
    kernels: dict[Name, KernelModel] = Field(default_factory=dict)
    stages: Annotated[list[StageModel], Field(min_length=1)] = Field(
        description="a list of stages, each with steps or combine"
    )
    outputs: Annotated[list[OutputModel], Field(min_length=1)] = Field(
        description="a list of {stage, path} to write"
    )
    execution: ExecutionModel = Field(default_factory=ExecutionModel)

    @model_validator(mode="after")
    def _references(self) -> ConfigModel:
        names = [stage.name for stage in self.stages]
        kernels = list(self.kernels)
        for i, stage in enumerate(self.stages):
            if stage.name == "input":
                raise KeyedError(
                    ("stages", i, "name"), "'input' names the input image; call this stage otherwise"
                )
            if stage.name in names[:i]:
                first = names.index(stage.name)
                raise KeyedError(
                    ("stages", i, "name"),
                    f"stage name {stage.name!r} is already used by stages[{first}]; "
                    "give each stage its own name",
                )
            if stage.combine is None:
                if stage.source is not None:
                    _check_source(names, i, stage.source, ("stages", i, "source"))
                for j, step in enumerate(stage.steps or ()):
                    if step.kernel not in self.kernels:
                        defined = (
                            f"Defined here: {', '.join(kernels)}" if kernels else "No kernels are defined"
                        )
                        raise KeyedError(
                            ("stages", i, "steps", j, "kernel"),
                            f"no kernel named {step.kernel!r}.{did_you_mean(step.kernel, kernels)} {defined}",
                        )
            elif stage.combine.sources is not None:
                for j, source in enumerate(stage.combine.sources):
                    _check_source(names, i, source, ("stages", i, "combine", "sources", j))
            elif stage.combine.source is not None:
                _check_source(names, i, stage.combine.source, ("stages", i, "combine", "source"))
        for i, output in enumerate(self.outputs):
            if output.stage not in names:
                raise KeyedError(
                    ("outputs", i, "stage"),
                    f"no stage named {output.stage!r}.{did_you_mean(output.stage, names)} "
                    f"Stages: {', '.join(names)}",
                )
        return self


def _check_source(names: list[str], index: int, source: str, key: KeyPath) -> None:
    """Raise unless `source` is the input or a stage before ``stages[index]``."""
    earlier = ["input", *names[:index]]
    if source in earlier:
        return
    if source == names[index]:
        raise KeyedError(key, f"stage {source!r} cannot read itself; name the input or an earlier stage")
    if source in names:
        later = names.index(source)
        raise KeyedError(
            key,
            f"stage {source!r} comes later (stages[{later}]); a stage reads the input or an earlier "
            f"stage, so move stages[{later}] above stages[{index}]",
        )
    raise KeyedError(
        key, f"no stage named {source!r}.{did_you_mean(source, earlier)} Available here: {', '.join(earlier)}"
    )


def validate(source: Source) -> ConfigModel:
    """Check `source` against the schema; raise ConfigError naming the first problem's key and line."""
    try:
        return ConfigModel.model_validate(source.data)
    except ValidationError as err:
        raise translate(source, err, ConfigModel) from err
