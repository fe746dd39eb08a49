"""Configured outputs -> checked write targets: provenance, ``{stem}`` paths, `check_output`.

Part of planning (`convflow.pipeline._plan`): every output is checked by
`convflow.io.check_output` before anything is computed, and its errors name
the output's key in the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convflow.config import Config, KeyPath, OutputSpec, config_to_dict
from convflow.engine import BlockArray, take_blocks
from convflow.errors import (
    ArgumentError,
    ConfigError,
    ConvflowError,
    KernelError,
    MethodError,
    ModeError,
    OutputExistsError,
    ResumeError,
)
from convflow.io import InputImage, check_output, written_blocks
from convflow.kernels import Kernel

# A kernel of at most this many weights is stored with its values in the provenance.
_RECORDED_WEIGHTS = 125
# Errors of an engine entrance that are a config mistake, not a storage problem.
_ARGUMENT_ERRORS = (ArgumentError, KernelError, MethodError, ModeError)


@dataclass(frozen=True)
class OutputTarget:
    """One file to write: a stage's array, where, how, and what is there now."""

    index: int  # in the config's outputs
    stage: str
    path: str
    format: str
    dtype: str
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None  # zarr v3 shards (None: one file per chunk)
    state: str  # new, replace, resume, complete; 'exists' where the check was only noted
    array: BlockArray = field(repr=False)  # the stage's, in the blocks its writer stores (`written_blocks`)
    options: dict[str, Any] = field(repr=False)  # write_output's keywords besides path
    note: str | None = None


def error_at(config: Config, key: KeyPath, err: ConvflowError) -> ConvflowError:
    """`err` prefixed with where `key` is: a ConfigError for argument mistakes, else the same class."""
    message = f"{config.where(key)}: {err}"
    if isinstance(err, _ARGUMENT_ERRORS):
        return ConfigError(message)
    return type(err)(message)


def provenance(config: Config, kernels: dict[str, Kernel]) -> dict[str, Any]:
    """The run description stored with every output (and compared on --resume).

    The execution section is left out: where a run computes does not change
    its result, so a run started on threads may be resumed on a cluster.
    """
    resolved = config_to_dict(config)
    resolved.pop("execution", None)
    recorded = {}
    for name, kernel in kernels.items():
        values = np.ascontiguousarray(kernel.values, dtype=np.float64)
        entry: dict[str, Any] = {
            "name": kernel.name,
            "params": dict(kernel.params),
            "shape": list(values.shape),
        }
        entry["sha256"] = hashlib.sha256(values.tobytes()).hexdigest()
        if values.size <= _RECORDED_WEIGHTS:
            entry["values"] = values.tolist()
        recorded[name] = entry
    return {"config": resolved, "kernels": recorded}


def _stem(path: str) -> str:
    """A file's name without its suffix (``.ome.tif`` and ``.ome.zarr`` count as one)."""
    name = os.path.basename(path.rstrip("/\\"))
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def output_targets(
    config: Config,
    index: int,
    spec: OutputSpec,
    array: BlockArray,
    image: InputImage,
    provenance: dict[str, Any],
    overwrite: bool,
    resume: bool,
    strict: bool,
) -> list[OutputTarget]:
    """Check one configured output: one target, or one per input file for a ``{stem}`` path."""
    options: dict[str, Any] = {
        "format": spec.format,
        "dtype": spec.dtype,
        "chunks": spec.chunks,
        "shards": spec.shards,
        "compression": None if spec.compression is None else dataclasses.asdict(spec.compression),
        "scale": spec.scale,
        "units": spec.units,
        "inputs": (image,),
        "provenance": {**provenance, "stage": spec.stage},
        "storage_options": spec.storage_options,
    }
    if spec.pyramid is not None:
        options |= {"pyramid_levels": spec.pyramid.levels, "pyramid_method": spec.pyramid.method}
    path = str(spec.path)
    if "{stem}" not in path:
        return [
            _target(
                config, index, spec, array, path, {**options, "axes": image.axes}, overwrite, resume, strict
            )
        ]
    if not image.files:
        raise ConfigError(
            f"{config.where(('outputs', index, 'path'))}: {{stem}} names each file of a glob input, but "
            f"input.path {str(config.input.path)!r} is not a glob; remove {{stem}} or give a glob such as "
            "scans/*.tif"
        )
    stems = [_stem(file) for file in image.files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ConfigError(
            f"{config.where(('outputs', index, 'path'))}: several input files are called {repeated[0]!r}, "
            "so {stem} would write them to one path; narrow the glob"
        )
    targets = []
    for number, stem in enumerate(stems):
        per_file = {**options, "axes": image.axes[1:]}
        per_file["provenance"] = {**options["provenance"], "file": image.files[number]}
        target_path = path.replace("{stem}", stem)
        targets.append(
            _target(
                config,
                index,
                spec,
                take_blocks(array, number),
                target_path,
                per_file,
                overwrite,
                resume,
                strict,
            )
        )
    return targets


def _target(
    config: Config,
    index: int,
    spec: OutputSpec,
    array: BlockArray,
    path: str,
    options: dict[str, Any],
    overwrite: bool,
    resume: bool,
    strict: bool,
) -> OutputTarget:
    """Run `check_output` for one file; errors name the output's key."""
    note = None
    try:
        plan = check_output(path, array, overwrite=overwrite, resume=resume, **options)
    except (OutputExistsError, ResumeError) as err:
        if strict:
            raise error_at(config, ("outputs", index, "path"), err) from err
        note = str(err)
        try:  # the layout, as --overwrite would write it
            plan = check_output(path, array, overwrite=True, **options)
        except OutputExistsError:
            plan = None  # not an output of convflow's kind: never replaced
    except ConvflowError as err:
        text = str(err)
        keys = {"pyramid_levels": "pyramid", "pyramid_method": "pyramid", "scale": "scale", "units": "units"}
        keys |= {k: k for k in ("format", "dtype", "chunks", "shards", "compression")}
        key = next((keys[k] for k in keys if text.startswith(k + "=")), "path")
        raise error_at(config, ("outputs", index, key), err) from err
    layout = None if plan is None else plan.layout
    state = "exists" if note else plan.state  # type: ignore[union-attr]
    return OutputTarget(
        index=index,
        stage=spec.stage,
        path=path,
        format=spec.format if plan is None else plan.format,
        dtype=layout.dtype if layout is not None else str(spec.dtype or array.dtype),
        chunks=layout.chunks if layout is not None else tuple(max(c) for c in array.chunks),
        shards=layout.shards if layout is not None else spec.shards,
        state=state,
        array=array if layout is None else written_blocks(array, layout),
        options=options,
        note=note,
    )
