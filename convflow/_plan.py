"""Config objects -> a checked Plan: the input opened lazily, each stage a dask array, each output checked.

`make_plan` finds every mistake a user can make before a block is computed:
the input is opened (nothing is read but metadata), kernels are built for the
input's spatial axes, every step is checked by the engine's own entrance
(`make_filter`, `choose_method`), stages become dask arrays, and every
output goes through `convflow.io.check_output`.  Errors name the config key
at fault.  The Plan also says what the run will cost: halos, chunks, the
method of each step and why, tasks, and an estimate of peak memory.

Halos larger than the volume are never refused: every mode (scipy's and so
convflow's) extends an axis to any distance, and the engine merges the
chunks of such an axis into one.  The plan notes it, since that chunk is
what then sets the memory a task needs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import dask.array as da

from convflow import _halo, _methods
from convflow._config import CombineStage, Config, FilterStage, build_kernels
from convflow._convolve import Filter, make_filter
from convflow._fused import fusable_groups
from convflow._plan_outputs import OutputTarget, error_at, output_targets, provenance
from convflow._stack import Step, apply_stack, combine
from convflow.errors import ConfigError, ConvflowError
from convflow.io import InputImage, open_input
from convflow.kernels import Kernel

__all__ = ["OutputTarget", "Plan", "StageReport", "StepReport", "make_plan"]

# Padded blocks a filter task holds at its peak: the padded input, the result of
# the step being computed, and the previous step's result (or the output block).
BLOCKS_PER_TASK = 3
# An FFT step also holds the spectra of the block and of the padded kernel.
BLOCKS_PER_FFT_TASK = 5


@dataclass(frozen=True)
class StepReport:
    """One step as it will run: its kernel, the axes it covers, and the method chosen."""

    kernel: str
    op: str
    mode: str
    shape: tuple[int, ...]
    axes: str
    method: str
    reason: str
    pass_index: int


@dataclass(frozen=True)
class StageReport:
    """What a stage costs: halo, chunks, steps, and the bytes one of its tasks holds."""

    name: str
    sources: tuple[str, ...]
    kind: str  # 'filter' or the combine op
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[tuple[int, ...], ...]
    halo: tuple[tuple[int, int], ...]
    steps: tuple[StepReport, ...] = ()
    passes: int = 0
    block_bytes: int = 0  # the largest block a task reads, halo included, in the compute dtype
    blocks_per_task: int = 1
    notes: tuple[str, ...] = ()

    @property
    def task_bytes(self) -> int:
        """Estimated bytes one task of this stage holds at its peak."""
        return self.block_bytes * self.blocks_per_task


@dataclass(frozen=True)
class Plan:
    """A checked pipeline, ready to run: nothing has been computed."""

    config: Config
    image: InputImage
    kernels: dict[str, Kernel]
    arrays: dict[str, da.Array] = field(repr=False)
    stages: tuple[StageReport, ...]
    outputs: tuple[OutputTarget, ...]

    def task_counts(self) -> tuple[dict[str, int], int]:
        """Return the dask tasks each stage adds, and the tasks of all outputs together."""
        keys = {"input": set(dict(self.image.array.__dask_graph__()))}
        counts = {}
        for stage in self.stages:
            own = set(dict(self.arrays[stage.name].__dask_graph__()))
            counts[stage.name] = len(own - set().union(*(keys[s] for s in stage.sources)))
            keys[stage.name] = own
        used = {output.stage for output in self.outputs}
        total = set().union(*(keys[name] for name in used))
        return counts, len(total)

    def peak_memory(self, workers: int) -> tuple[int, StageReport]:
        """Return the estimated peak bytes with `workers` tasks at once, and the stage that sets it.

        The estimate is ``workers x padded block bytes x blocks held per task``
        for the stage with the largest tasks; results waiting for their
        neighbours' halos come on top.
        """
        worst = max(self.stages, key=lambda stage: stage.task_bytes)
        return workers * worst.task_bytes, worst


def make_plan(config: Config, *, overwrite: bool = False, resume: bool = False, strict: bool = True) -> Plan:
    """Open the input, build every stage lazily, and check every output.

    Parameters
    ----------
    config : Config
        From `convflow._config.load_config`.
    overwrite, resume : bool, default False
        How existing outputs will be treated (``--overwrite``, ``--resume``).
    strict : bool, default True
        Raise for an output that exists (as ``convflow run`` must).  False
        notes it on the output instead (``validate`` and ``plan``).

    Returns
    -------
    Plan

    Raises
    ------
    convflow.errors.ConvflowError
        Any mistake, naming the config key: ConfigError for kernels, steps
        and output settings, InputNotFoundError / InputFormatError for the
        input, OutputExistsError / OutputPathError / ResumeError for outputs.
    """
    image = _open_input(config)
    # Kernel axis letters (`axis: x`) and ndim follow the input's axes, given or read from the file.
    resolved = dataclasses.replace(config, input=dataclasses.replace(config.input, axes=image.axes))
    kernels = build_kernels(resolved)
    arrays: dict[str, da.Array] = {"input": image.array}
    reports = []
    for index, stage in enumerate(config.stages):
        if isinstance(stage, FilterStage):
            array, report = _filter_stage(config, index, stage, arrays[stage.source], kernels, image.axes)
        else:
            array, report = _combine_stage(config, index, stage, arrays)
        arrays[stage.name] = array
        reports.append(report)
    record = provenance(config, kernels)
    outputs = []
    for index, spec in enumerate(config.outputs):
        array = arrays[spec.stage]
        outputs += output_targets(config, index, spec, array, image, record, overwrite, resume, strict)
    return Plan(config, image, kernels, arrays, tuple(reports), tuple(outputs))


def _open_input(config: Config) -> InputImage:
    """Open the input lazily; errors name input.path, input.axes or input.chunks."""
    spec = config.input
    try:
        return open_input(spec.path, dataset=spec.dataset, axes=spec.axes, chunks=spec.chunks)
    except ConvflowError as err:
        text = str(err)
        key = next((k for k in ("axes", "chunks") if text.startswith(k + "=")), "path")
        raise error_at(config, ("input", key), err) from err


def _sum_halos(halos: list[_halo.Halo]) -> _halo.Halo:
    return tuple((sum(h[a][0] for h in halos), sum(h[a][1] for h in halos)) for a in range(len(halos[0])))


def _filter_stage(
    config: Config, index: int, stage: FilterStage, source: da.Array, kernels: dict[str, Kernel], axes: str
) -> tuple[da.Array, StageReport]:
    """Check each step with the engine's entrance, then build the fused stack."""
    spatial = [i for i, letter in enumerate(axes) if letter in "zyx"]
    steps, filters = [], []
    for j, spec in enumerate(stage.steps):
        kernel = kernels[spec.kernel]
        kernel_axes = tuple(spatial[len(spatial) - kernel.ndim :])
        if kernel.ndim > len(spatial):
            raise ConfigError(
                f"{config.where(('stages', index, 'steps', j, 'kernel'))}: kernel {spec.kernel!r} has "
                f"{kernel.ndim} axes but the input has {len(spatial)} spatial axes (axes={axes!r})"
            )
        options = {"mode": spec.mode, "cval": spec.cval, "origin": spec.origin, "method": spec.method}
        try:
            filters.append(
                make_filter(
                    source.dtype,
                    source.ndim,
                    kernel,
                    flip=spec.op == "convolve",
                    axes=kernel_axes,
                    dtype=None,
                    **options,
                )
            )
        except ConvflowError as err:
            key = next((k for k in options if str(err).startswith(k + "=")), "kernel")
            raise error_at(config, ("stages", index, "steps", j, key), err) from err
        steps.append(Step(kernel, spec.op, spec.mode, spec.cval, spec.origin, kernel_axes, spec.method))
    step_reports, block_bytes, per_task, passes = _choose_methods(config, index, stage, filters, source, axes)
    try:
        array = apply_stack(source, steps)
    except ConvflowError as err:
        raise error_at(config, ("stages", index, "steps"), err) from err
    halo = _sum_halos([_halo.full_halo(source.ndim, f.axes, f.halo) for f in filters])
    report = StageReport(
        name=stage.name,
        sources=stage.sources,
        kind="filter",
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        chunks=array.chunks,
        halo=halo,
        steps=step_reports,
        passes=passes,
        block_bytes=block_bytes,
        blocks_per_task=per_task,
        notes=_halo_notes(halo, source, axes),
    )
    return array, report


def _choose_methods(
    config: Config, index: int, stage: FilterStage, filters: list[Filter], source: da.Array, axes: str
) -> tuple[tuple[StepReport, ...], int, int, int]:
    """Each step's method and reason for the block it sees inside its fused pass, as the engine picks.

    Returns the step reports, the largest padded block in bytes, the blocks a
    task holds, and the number of overlap passes.
    """
    itemsize = filters[0].compute_dtype.itemsize
    reports: list[StepReport] = []
    block_bytes, uses_fft, first = 0, False, 0
    groups = fusable_groups(filters)
    for number, group in enumerate(groups):
        halos = [_halo.full_halo(source.ndim, f.axes, f.halo) for f in group]
        total = _sum_halos(halos)
        work = [
            _halo.working_chunks(c, b, a, edges_read_inside=len(group) > 1)
            for c, (b, a) in zip(source.chunks, total, strict=True)
        ]
        chunk = tuple(max(w) for w in work)
        padded = tuple(c + b + a for c, (b, a) in zip(chunk, total, strict=True))
        block_bytes = max(block_bytes, math.prod(padded) * itemsize)
        for k, filt in enumerate(group):
            j = first + k
            remaining = _sum_halos(halos[k:])
            block = tuple(c + b + a for c, (b, a) in zip(chunk, remaining, strict=True))
            try:
                method, reason = _methods.choose_method(
                    filt.method, filt.weights, filt.terms, block, filt.axes
                )
            except ConvflowError as err:
                raise error_at(config, ("stages", index, "steps", j, "method"), err) from err
            uses_fft |= method == "fft"
            spec = stage.steps[j]
            reports.append(
                StepReport(
                    kernel=spec.kernel,
                    op=spec.op,
                    mode=spec.mode,
                    shape=filt.weights.shape,
                    axes="".join(axes[a] for a in filt.axes),
                    method=method,
                    reason=reason,
                    pass_index=number,
                )
            )
        first += len(group)
    per_task = BLOCKS_PER_FFT_TASK if uses_fft else BLOCKS_PER_TASK
    return tuple(reports), block_bytes, per_task, len(groups)


def _halo_notes(halo: _halo.Halo, source: da.Array, axes: str) -> tuple[str, ...]:
    """Say where a halo reaches past the whole axis, or makes the engine merge chunks."""
    notes = []
    for letter, size, chunks, (before, after) in zip(axes, source.shape, source.chunks, halo, strict=True):
        if max(before, after) >= size and (before or after):
            notes.append(
                f"the halo along {letter} ({before}, {after}) reaches past the whole axis ({size}): exact "
                f"for every mode; the axis is filtered as one chunk"
            )
        elif before or after:
            merged = _halo.minimum_chunks(chunks, max(before, after))
            if merged != chunks:
                notes.append(
                    f"chunks along {letter} are smaller than the halo ({before}, {after}): the engine "
                    f"merges them to {max(merged)}"
                )
    return tuple(notes)


def _combine_stage(
    config: Config, index: int, stage: CombineStage, arrays: dict[str, da.Array]
) -> tuple[da.Array, StageReport]:
    """Combine earlier stages element-wise."""
    sources = [arrays[name] for name in stage.sources]
    try:
        array = combine(stage.op, *sources, factor=stage.factor, min=stage.min, max=stage.max)
    except ConvflowError as err:
        raise error_at(config, ("stages", index, "combine"), err) from err
    block = math.prod(max(c) for c in array.chunks) * array.dtype.itemsize if array.size else 0
    report = StageReport(
        name=stage.name,
        sources=stage.sources,
        kind=stage.op,
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        chunks=array.chunks,
        halo=((0, 0),) * array.ndim,
        block_bytes=block,
        blocks_per_task=len(sources) + 1,
    )
    return array, report
