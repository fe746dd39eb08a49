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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from convflow.config import CombineStage, Config, FilterStage, build_kernels
from convflow.engine import (
    SPATIAL,
    BlockArray,
    block_graph,
    combine_blocks,
    compute_dtype,
    describe_shaped,
    from_dask,
    make_filter,
    minimum_chunks,
    shape_groups,
    shaped_blocks,
    signal_origin,
    sum_halos,
    to_dask,
)
from convflow.errors import ConfigError, ConvflowError, InputFormatError
from convflow.io import WAVE_BYTES, InputImage, open_input
from convflow.io._record import measured_cost
from convflow.io._waves import count_waves, tile_waves
from convflow.kernels import Kernel
from convflow.pipeline._outputs import OutputTarget, error_at, output_targets, provenance

__all__ = ["OutputTarget", "Plan", "StageReport", "StepReport", "make_plan"]

# Padded blocks a filter task holds at its peak: the padded input, the result of
# the step being computed, and the previous step's result (or the output block).
# A sum of separable terms may hold more partial results: the engine says how
# many (`Pass.blocks_held`).
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
    convention: str = "ndimage"  # or 'signal': scipy.signal's centring
    result: str = "same"  # the step's output shape: same, full or valid


@dataclass(frozen=True)
class StageReport:
    """What a stage costs: halo, chunks, steps, and the bytes one of its tasks holds."""

    name: str
    sources: tuple[str, ...]
    kind: str  # 'filter' or the combine op
    shape: tuple[int, ...]
    dtype: str  # the compute dtype, which is also the stage's array dtype
    chunks: tuple[tuple[int, ...], ...]
    halo: tuple[tuple[int, int], ...]
    steps: tuple[StepReport, ...] = ()
    dtype_reason: str | None = None  # who widened the compute dtype past the policy, if anyone
    passes: int = 0
    block_bytes: int = 0  # the largest block a task reads, halo included, in the compute dtype
    blocks_per_task: int = 1
    notes: tuple[str, ...] = ()

    @property
    def task_bytes(self) -> int:
        """Estimated bytes one task of this stage holds at its peak."""
        return self.block_bytes * self.blocks_per_task


class StageArrays(Mapping[str, da.Array]):
    """The stages as dask arrays, each made when first asked for (every task of it then made).

    A run never asks: it makes each wave's tasks from the stages' blocks
    (`Plan.blocks`).  Previews and scripts that want a dask array get one.
    """

    def __init__(self, blocks: Mapping[str, BlockArray], image: InputImage) -> None:
        self._blocks, self._image = blocks, image
        self._made: dict[str, da.Array] = {"input": image.array}

    def __getitem__(self, name: str) -> da.Array:
        if name not in self._made:
            self._made[name] = to_dask(self._blocks[name])
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)


@dataclass(frozen=True)
class Plan:
    """A checked pipeline, ready to run: nothing has been computed, and no task made."""

    config: Config
    image: InputImage
    kernels: dict[str, Kernel]
    blocks: dict[str, BlockArray] = field(repr=False)
    arrays: StageArrays = field(repr=False)  # the same as dask arrays, each made on first use
    stages: tuple[StageReport, ...]
    outputs: tuple[OutputTarget, ...]

    def waves(self, wave_bytes: int | None = None, concurrency: int = 1) -> int:
        """The number of waves a run of every output computes, counted from the tiles alone."""
        return count_waves([target.array for target in self.outputs], wave_bytes, concurrency)

    def task_counts(self, wave_bytes: int | None = None) -> tuple[dict[str, int], int]:
        """Return the tasks each stage adds to the first wave of a run, and that wave's tasks in all.

        Only that wave's tasks are made (a run makes each wave's as it comes),
        so this costs the same for a volume of any size.  The total counts one
        write per output block besides the stages' tasks.
        """
        arrays = [target.array for target in self.outputs]
        wave = next(tile_waves(arrays, None, WAVE_BYTES if wave_bytes is None else wave_bytes), [])
        graph, keys = block_graph([(arrays[number], blocks) for number, blocks in wave])
        owner = {}
        for stage in self.stages:  # a stage owns the blocks its sources do not make
            for name in _names(self.blocks[stage.name]):
                owner.setdefault(name, stage.name)
        for name in _names(self.blocks["input"]):
            owner[name] = "input"
        counts = dict.fromkeys((stage.name for stage in self.stages), 0)
        for key in graph:
            stage = owner.get(key[0] if isinstance(key, tuple) else key, "input")
            if stage in counts:
                counts[stage] += 1
        return counts, len(graph) + len(keys)

    def expected_seconds(self) -> tuple[float, int, float, str] | None:
        """The time a run of every output is expected to take, where a measured cost per chunk is known.

        A run leaves beside each output it has not finished a record of the
        seconds per chunk it measured (`convflow.io._record`); the first such
        output gives the cost.  Returns (seconds, chunks, seconds per chunk,
        the output measured), or None.
        """
        for target in self.outputs:
            cost = measured_cost(target.path, target.options.get("storage_options"))
            if cost is not None:
                chunks = sum(math.prod(t.array.numblocks) for t in self.outputs)
                return chunks * cost, chunks, cost, target.path
        return None

    def peak_memory(self, workers: int) -> tuple[int, StageReport]:
        """Return the estimated peak bytes with `workers` tasks at once, and the stage that sets it.

        The estimate is ``workers x padded block bytes x blocks held per task``
        for the stage with the largest tasks; results waiting for their
        neighbours' halos come on top.
        """
        worst = max(self.stages, key=lambda stage: stage.task_bytes)
        return workers * worst.task_bytes, worst


def _names(array: BlockArray) -> Iterator[str]:
    """The names of `array` and of every block array it is made from."""
    seen, pending = set(), [array]
    while pending:
        current = pending.pop()
        if current.name not in seen:
            seen.add(current.name)
            yield current.name
            pending.extend(current.inputs())


def make_plan(config: Config, *, overwrite: bool = False, resume: bool = False, strict: bool = True) -> Plan:
    """Open the input, build every stage lazily, and check every output.

    Parameters
    ----------
    config : Config
        From `convflow.config._load.load_config`.
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
    arrays: dict[str, BlockArray] = {"input": from_dask(image.array)}
    dtypes = stage_dtypes(config, image.dtype)
    reports = []
    for index, stage in enumerate(config.stages):
        dtype, reason = dtypes[stage.name]
        if isinstance(stage, FilterStage):
            array, report = _filter_stage(
                config, index, stage, arrays[stage.source], kernels, image.axes, dtype
            )
        else:
            array, report = _combine_stage(config, index, stage, arrays, dtype)
        report = dataclasses.replace(report, dtype_reason=reason)
        arrays[stage.name] = array
        reports.append(report)
    record = provenance(config, kernels)
    outputs = []
    for index, spec in enumerate(config.outputs):
        array = arrays[spec.stage]
        outputs += output_targets(config, index, spec, array, image, record, overwrite, resume, strict)
    return Plan(config, image, kernels, arrays, StageArrays(arrays, image), tuple(reports), tuple(outputs))


def stage_dtypes(config: Config, input_dtype: np.dtype) -> dict[str, tuple[np.dtype, str | None]]:
    """Decide each stage's compute dtype once, and say who widened it past the policy (#13).

    An output's float dtype asks the stage it writes to compute at least at
    that precision; a stage asks the same of the stages it reads, so nothing
    upstream rounds to less.  A stage then computes in the wider of the
    policy for its sources and what is asked of it (`compute_dtype`), and
    its array has that dtype.  A stage written by two outputs computes once,
    at the wider precision, and each output casts from it.

    Examples
    --------
    >>> from types import SimpleNamespace as S
    >>> stages = (S(name="smooth", sources=("input",)), S(name="edges", sources=("smooth",)))
    >>> outputs = (S(stage="edges", dtype="float64"), S(stage="edges", dtype="uint8"))
    >>> config = S(stages=stages, outputs=outputs)
    >>> for name, (dtype, reason) in stage_dtypes(config, np.dtype(np.uint8)).items():
    ...     print(name, dtype, reason)
    smooth float64 stage 'edges' computes in float64
    edges float64 outputs[0] writes it as float64
    """
    asked: dict[str, tuple[np.dtype, str]] = {}

    def ask(stage: str, dtype: np.dtype, reason: str) -> None:
        if stage != "input" and (stage not in asked or dtype.itemsize > asked[stage][0].itemsize):
            asked[stage] = (dtype, reason)

    for index, spec in enumerate(config.outputs):
        if spec.dtype is not None and np.dtype(spec.dtype).kind == "f":
            ask(spec.stage, np.dtype(spec.dtype), f"outputs[{index}] writes it as {spec.dtype}")
    for stage in reversed(config.stages):
        if stage.name in asked:
            wanted = compute_dtype(np.float32, asked[stage.name][0])
            for source in stage.sources:
                ask(source, wanted, f"stage {stage.name!r} computes in {wanted}")
    policy = {"input": np.dtype(input_dtype)}
    result: dict[str, tuple[np.dtype, str | None]] = {"input": (np.dtype(input_dtype), None)}
    for stage in config.stages:
        wanted = asked.get(stage.name, (None, None))[0]
        dtype = np.result_type(*(compute_dtype(result[s][0], wanted) for s in stage.sources))
        policy[stage.name] = np.result_type(*(compute_dtype(policy[s]) for s in stage.sources))
        reason = asked[stage.name][1] if dtype != policy[stage.name] else None
        result[stage.name] = (dtype, reason)
    del result["input"]
    return result


def _open_input(config: Config) -> InputImage:
    """Open the input lazily; errors name input.path, input.axes or input.chunks."""
    spec = config.input
    try:
        image = open_input(
            spec.path,
            dataset=spec.dataset,
            axes=spec.axes,
            chunks=spec.chunks,
            storage_options=spec.storage_options,
        )
    except ConvflowError as err:
        text = str(err)
        key = next((k for k in ("axes", "chunks") if text.startswith(k + "=")), "path")
        raise error_at(config, ("input", key), err) from err
    empty = [letter for letter, n in zip(image.axes, image.shape, strict=True) if n == 0]
    if empty:
        # Refused rather than written empty: an empty result is no use, a TIFF cannot hold one, and
        # an empty input is most often the wrong dataset, level or export.
        raise InputFormatError(
            f"{config.where(('input', 'path'))}: {image.path} has shape {image.shape}: its axis "
            f"{empty[0]} holds no samples, so there is nothing to filter; check that this is the image "
            "(and dataset) you meant"
        )
    return image


def _filter_stage(
    config: Config,
    index: int,
    stage: FilterStage,
    source: BlockArray,
    kernels: dict[str, Kernel],
    axes: str,
    dtype: np.dtype,
) -> tuple[BlockArray, StageReport]:
    """Check each step with the engine's entrance, then run the stack as the engine describes it."""
    spatial = [i for i, letter in enumerate(axes) if letter in SPATIAL]
    filters = []
    for j, spec in enumerate(stage.steps):
        kernel = kernels[spec.kernel]
        if kernel.ndim > len(spatial):
            raise ConfigError(
                f"{config.where(('stages', index, 'steps', j, 'kernel'))}: kernel {spec.kernel!r} has "
                f"{kernel.ndim} axes but the input has {len(spatial)} spatial axes (axes={axes!r})"
            )
        origin = spec.origin
        if spec.convention == "signal":
            origin = signal_origin(kernel.shape, "convolve" if spec.op == "convolve" else "correlate")
        options = {"mode": spec.mode, "cval": spec.cval, "origin": origin, "method": spec.method}
        try:
            filters.append(
                make_filter(
                    source.dtype,
                    source.ndim,
                    kernel,
                    flip=spec.op == "convolve",
                    axes=tuple(spatial[len(spatial) - kernel.ndim :]),
                    # Every step computes in, and gives, the stage's compute dtype.
                    dtype=dtype,
                    **options,
                )
            )
        except ConvflowError as err:
            key = next((k for k in options if str(err).startswith(k + "=")), "kernel")
            raise error_at(config, ("stages", index, "steps", j, key), err) from err
    # Steps of 'same' results fuse; a full or valid step changes the shape and runs alone.
    shapes = [spec.shape for spec in stage.steps]
    array, passes = source, []
    for start, stop in shape_groups(shapes):
        group_passes = describe_shaped(filters[start:stop], shapes[start], array.chunks)
        try:
            array = shaped_blocks(array, filters[start:stop], shapes[start], group_passes)
        except ConvflowError as err:  # a valid result of a kernel larger than the image
            raise error_at(config, ("stages", index, "steps", start, "shape"), err) from err
        passes += group_passes
    reports = []
    for number, step in enumerate(passes):
        for filt, method, reason in zip(step.filters, step.methods, step.reasons, strict=True):
            spec = stage.steps[len(reports)]
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
                    convention=spec.convention,
                    result=spec.shape,
                )
            )
    halo = sum_halos([step.halo for step in passes])
    uses_fft = any("fft" in step.methods for step in passes)
    itemsize = filters[0].compute_dtype.itemsize
    report = StageReport(
        name=stage.name,
        sources=stage.sources,
        kind="filter",
        shape=tuple(array.shape),
        dtype=str(array.dtype),
        chunks=array.chunks,
        halo=halo,
        steps=tuple(reports),
        passes=len(passes),
        block_bytes=max(math.prod(step.padded_shape) for step in passes) * itemsize,
        blocks_per_task=max(
            BLOCKS_PER_FFT_TASK if uses_fft else BLOCKS_PER_TASK, *(step.blocks_held for step in passes)
        ),
        notes=_halo_notes(halo, source, axes),
    )
    return array, report


def _halo_notes(halo: tuple[tuple[int, int], ...], source: BlockArray, axes: str) -> tuple[str, ...]:
    """Say where a halo reaches past the whole axis, or makes the engine merge chunks."""
    notes = []
    for letter, size, chunks, (before, after) in zip(axes, source.shape, source.chunks, halo, strict=True):
        if max(before, after) >= size and (before or after):
            notes.append(
                f"the halo along {letter} ({before}, {after}) reaches past the whole axis ({size}): exact "
                f"for every mode; the axis is filtered as one chunk"
            )
        elif before or after:
            merged = minimum_chunks(chunks, max(before, after))
            if merged != chunks:
                notes.append(
                    f"chunks along {letter} are smaller than the halo ({before}, {after}): the engine "
                    f"merges them to {max(merged)}"
                )
    return tuple(notes)


def _combine_stage(
    config: Config, index: int, stage: CombineStage, arrays: dict[str, BlockArray], dtype: np.dtype
) -> tuple[BlockArray, StageReport]:
    """Combine earlier stages element-wise, in the stage's compute dtype."""
    sources = [arrays[name] for name in stage.sources]
    try:
        array = combine_blocks(
            stage.op, sources, factor=stage.factor, min=stage.min, max=stage.max, dtype=dtype
        )
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
