"""The ``convflow`` command: arguments -> public API -> exit codes.

Exit codes: 0 success; 1 a run that failed while computing; 2 bad usage, a
bad config, a missing input, or an output that exists -- everything found
before any compute.  A `ConvflowError` prints one ``error: ...`` line on
stderr; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import convflow
from convflow import kernels
from convflow.config import SCHEDULERS, is_url, load_config
from convflow.errors import ArgumentError, ConvflowError, OutputExistsError, ResumeError
from convflow.io import WAVE_BYTES, close_sessions, describe, format_description, redact_text, tidy_outputs
from convflow.pipeline import (
    NOT_YET,
    Execution,
    Plan,
    SchedulerError,
    duration_text,
    make_plan,
    progress_style,
    resolve_execution,
    run_plan,
)
from convflow.preview import CROP, SHOW, preview_config, preview_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# What ``convflow preview`` reads as a config (anything else is an image) and may write.
CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".json")
PREVIEW_SUFFIXES = (".png", ".svg", ".pdf")

_DESCRIPTION = """\
Exact, chunked convolution pipelines for images and volumes larger than memory.
A config file (YAML, TOML or JSON) names the input, the kernels, the stages and
the outputs; see the README for its schema."""

_EPILOG = """\
exit codes: 0 success; 1 the run failed while computing; 2 bad usage, a bad
config, a missing input, or an output that exists (found before any compute)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convflow",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convflow {convflow.__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    run = verbs.add_parser("run", help="run a pipeline config and write its outputs")
    run.add_argument("config", metavar="CONFIG", help="a .yaml, .yml, .toml or .json pipeline file")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
    existing.add_argument(
        "--resume", action="store_true", help="finish incomplete outputs, computing only missing chunks"
    )
    run.add_argument(
        "--scheduler",
        metavar="S",
        choices=(*SCHEDULERS, *NOT_YET),
        help="threads (default), processes, synchronous, distributed, slurm or pbs; overrides "
        "execution.scheduler",
    )
    run.add_argument("--address", metavar="A", help="use the running dask scheduler at A (tcp://host:8786)")
    run.add_argument(
        "--dry-run", action="store_true", help="check everything and show the plan; compute and write nothing"
    )
    run.add_argument(
        "--preview",
        action="store_true",
        help="when the run ends, draw the input beside the outputs to <config stem>_preview.png "
        "in the first output's folder",
    )
    loudness = run.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    loudness.add_argument("-v", "--verbose", action="store_true", help="show the plan before running")

    validate = verbs.add_parser(
        "validate",
        help="check a config: schema, files, kernels, halos; no computing",
        description="Check a config without computing: its schema, the input (opened, metadata only), "
        "the kernels, every step's halo, and every output (its format and path; one that exists is "
        "noted). "
        "Exit 0 when all is well, 2 with one error line otherwise.",
    )
    validate.add_argument("config", metavar="CONFIG", help="a .yaml, .yml, .toml or .json pipeline file")
    plan = verbs.add_parser(
        "plan",
        help="show the graph: stages, halos, chunks, method per step, tasks, peak memory",
        description="Print what `convflow run` would do, computing nothing: each stage's steps with "
        "their method and halo, working chunks, outputs, task count and estimated peak memory.",
    )
    plan.add_argument("config", metavar="CONFIG", help="a .yaml, .yml, .toml or .json pipeline file")
    plan.add_argument(
        "--scheduler",
        metavar="S",
        choices=(*SCHEDULERS, *NOT_YET),
        help="plan for threads (default), processes, synchronous, distributed, slurm or pbs; "
        "overrides execution.scheduler",
    )
    plan.add_argument(
        "--address", metavar="A", help="plan for the running dask scheduler at A (tcp://host:8786)"
    )
    verbs.add_parser("kernels", help="list the kernel library")
    inspect = verbs.add_parser("inspect", help="shape, dtype, chunks, axes and codec of an image")
    inspect.add_argument(
        "path",
        metavar="PATH",
        help="a zarr, OME-Zarr, TIFF, HDF5 (.h5, .hdf5, .hdf) or .npy image, or a glob; a zarr group "
        "or an HDF5 file of several datasets lists them",
    )
    inspect.add_argument(
        "--dataset", metavar="D", help="the array inside a zarr group or HDF5 file, or an OME level"
    )
    preview = verbs.add_parser(
        "preview",
        help="draw middle slices of an image, or of a config's input beside its stages or outputs",
        description="Draw middle slices to a picture, reading only the chunks shown. A config shows its "
        "input beside its outputs once they are all written, else beside every stage computed on a "
        "central crop. An existing picture at -o is replaced.",
    )
    preview.add_argument(
        "path",
        metavar="PATH_OR_CONFIG",
        help="a .yaml, .yml, .toml or .json config, else an image as for inspect",
    )
    preview.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        default="preview.png",
        help="a .png, .svg or .pdf (default: preview.png)",
    )
    preview.add_argument(
        "--show",
        choices=SHOW,
        default="auto",
        help="config only: outputs, stages on a crop, or auto (default)",
    )
    preview.add_argument(
        "--crop", metavar="N", type=int, help=f"config only: longest side of the crop (default {CROP})"
    )
    preview.add_argument(
        "--dataset",
        metavar="D",
        help="image only: the array inside a zarr group or HDF5 file, or an OME level",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``convflow`` command line; return the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when a run failed while computing, 2 for anything
        found before computing.
    """
    args = _parser().parse_args(argv)  # exits 2 on bad usage, as argparse does
    try:
        if args.verb == "run":
            return _run(args)
        if args.verb == "validate":
            return _validate(args.config)
        if args.verb == "plan":
            return _plan(args)
        if args.verb == "kernels":
            return _kernels()
        if args.verb == "preview":
            return _preview(args)
        return _inspect(args.path, args.dataset)
    except ConvflowError as err:
        _error(err)
        return EXIT_USAGE
    finally:
        close_sessions()  # before exit: gcsfs's own close at exit may end in a traceback


def _error(err: BaseException | str) -> None:
    # One line, always: a message quoting a library's multi-line text is joined, not split.
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    print(f"error: {redact_text(text)}", file=sys.stderr)  # never a URL's userinfo or signature


def _run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    config = load_config(args.config)
    execution = resolve_execution(config, scheduler=args.scheduler, address=args.address)
    plan = make_plan(config, overwrite=args.overwrite, resume=args.resume)
    if args.dry_run:
        print(format_plan(plan, execution))
        print("dry run: nothing computed, nothing written")
        return EXIT_OK
    if args.verbose:
        print(format_plan(plan, execution))
    if all(target.state == "complete" for target in plan.outputs):
        # What a run killed after finishing them left (a TIFF's staging array, records of waves, its
        # leases) is removed, under their leases.
        tidy_outputs([(target.array, target.path, target.options) for target in plan.outputs])
        if not args.quiet:
            print("every output is complete: nothing to do")
        return _run_preview(plan, args) if args.preview else EXIT_OK
    try:
        reports = run_plan(
            plan,
            execution,
            overwrite=args.overwrite,
            resume=args.resume,
            progress="none" if args.quiet else "auto",
        )
    except (SchedulerError, OutputExistsError, ResumeError) as err:  # found before any compute
        _error(err)
        return EXIT_USAGE
    except ConvflowError as err:
        _error(f"the run failed: {err}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted; outputs not finished are marked incomplete: rerun with --resume to finish them")
        return 130
    except Exception as err:
        # A corrupt input chunk or a bug: the traceback (deep in dask or zarr) only when asked for.
        if args.verbose:
            traceback.print_exc()
        more = "" if args.verbose else " (--verbose shows the traceback)"
        _error(
            f"the run failed while computing: {type(err).__name__}: {err}{more}. Outputs not finished "
            "are marked incomplete: rerun with --resume once the cause is fixed"
        )
        return EXIT_FAILED
    if not args.quiet:
        for report in reports:
            done = {"written": "wrote", "resumed": "resumed", "complete": "complete, left as it is:"}
            blocks = (
                f" ({report.blocks_written}/{report.blocks_total} blocks)"
                if report.status != "complete"
                else ""
            )
            print(redact_text(f"{done[report.status]} {report.path} [{report.format}]{blocks}"))
        if progress_style("auto", sys.stderr) != "log":  # the last progress line said it already
            print(f"done in {time.monotonic() - started:.1f} s")
    return _run_preview(plan, args) if args.preview else EXIT_OK


def _run_preview(plan: Plan, args: argparse.Namespace) -> int:
    """Draw the finished outputs to ``<config stem>_preview.png`` beside the first one; 1 if that fails."""
    first = plan.outputs[0].path
    # Beside the first output, or beside the config when that output is in an object store.
    folder = os.path.dirname(args.config) if is_url(first) else os.path.dirname(first)
    out = os.path.join(folder, f"{Path(args.config).stem}_preview.png")
    try:
        preview_config(plan, out, show="outputs")
    except ConvflowError as err:
        _error(f"the outputs are written, but the preview failed: {err}")
        return EXIT_FAILED
    if not args.quiet:
        print(f"preview {out}")
    return EXIT_OK


def _validate(path: str) -> int:
    config = load_config(path)
    resolve_execution(config)
    plan = make_plan(config, strict=False)
    image = plan.image
    print(
        f"ok: {path}: input {image.shape} {image.dtype} axes {image.axes}; "
        f"{len(plan.stages)} stages, {len(plan.outputs)} outputs"
    )
    for stage in plan.stages:
        for note in stage.notes:
            print(f"note: stage {stage.name}: {note}")
    for target in plan.outputs:
        if target.note:
            print(f"note: {target.note}")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    execution = resolve_execution(config, scheduler=args.scheduler, address=args.address)
    print(format_plan(make_plan(config, strict=False), execution))
    return EXIT_OK


def _kernels(stream: IO[str] | None = None) -> int:
    stream = stream or sys.stdout
    for name, description in kernels.describe():
        print(f"{name:<10} {description}", file=stream)
        print(f"{'':<10} params: {kernels.signature(name)}", file=stream)
    return EXIT_OK


def _inspect(path: str, dataset: str | None) -> int:
    info = describe(path, dataset=dataset)
    print(redact_text(format_description(info)))
    record = info.get("convflow")
    if isinstance(record, dict):
        status = (
            "incomplete (a run stopped before its last chunk)" if record.get("incomplete") else "complete"
        )
        print(f"written by convflow {record.get('version', '?')}: {status}")
        for key in ("started", "finished"):
            if key in record:
                print(f"  {key}: {record[key]}")
        if "stage" in record:
            print(f"  stage: {record['stage']}")
    return EXIT_OK


def _preview(args: argparse.Namespace) -> int:
    # Only picture suffixes: a slip such as -o in.tif must not replace an image with a drawing of it.
    if Path(args.output).suffix.lower() not in PREVIEW_SUFFIXES:
        raise ArgumentError(
            f"-o {args.output!r}: a preview is written as {', '.join(PREVIEW_SUFFIXES)}; e.g. -o preview.png"
        )
    if os.path.isdir(args.output):
        raise ArgumentError(f"-o {args.output!r} is a folder; give a file name such as preview.png")
    is_config = Path(args.path).suffix.lower() in CONFIG_SUFFIXES
    if is_config:
        if args.dataset is not None:
            raise ArgumentError("--dataset applies to an image; a config names its input's dataset itself")
        crop = CROP if args.crop is None else args.crop
        out = preview_config(args.path, args.output, show=args.show, crop=crop)
    else:
        if args.show != "auto" or args.crop is not None:
            raise ArgumentError(
                f"--show and --crop apply to a config (a {', '.join(CONFIG_SUFFIXES)} file), not to "
                f"the image {args.path!r}"
            )
        out = preview_path(args.path, args.output, dataset=args.dataset)
    print(f"preview {out}")
    return EXIT_OK


def _bytes(count: float) -> str:
    """Bytes in binary units, 3 significant digits.

    Examples
    --------
    >>> _bytes(512), _bytes(3 * 2**20)
    ('512 B', '3 MiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _count(number: int, noun: str) -> str:
    """``'1 step'``, ``'2 steps'``, ``'2 passes'``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}{'es' if noun.endswith('s') else 's'}"


def _halo_text(axes: str, halo: Sequence[tuple[int, int]]) -> str:
    parts = [f"{a} {b}+{c}" for a, (b, c) in zip(axes, halo, strict=True) if b or c]
    return ", ".join(parts) or "none"


def format_plan(plan: Plan, execution: Execution) -> str:
    """The text ``convflow plan`` prints: input, stages, outputs, tasks and peak memory."""
    image = plan.image
    axes = image.axes
    lines = [
        f"input   {image.path} ({image.format}): shape {image.shape} {image.dtype}, axes {axes}, "
        f"chunks {tuple(max(c) for c in image.chunks)}"
    ]
    wave = execution.wave_bytes or WAVE_BYTES
    counts, total = plan.task_counts(wave)
    for stage in plan.stages:
        chunks = tuple(max(c) for c in stage.chunks)
        if stage.kind == "filter":
            lines.append(
                f"stage   {stage.name} <- {stage.sources[0]}: {_count(len(stage.steps), 'step')} in "
                f"{_count(stage.passes, 'pass')}; halo {_halo_text(axes, stage.halo)}; shape {stage.shape}"
            )
            for number, step in enumerate(stage.steps):
                kernel = f"{step.op} {step.kernel} {step.shape} over {step.axes}, mode {step.mode}"
                if step.convention != "ndimage":
                    kernel += f", {step.convention} centring"
                if step.result != "same":
                    kernel += f", {step.result} result"
                lines.append(f"  step {number}: {kernel}: {step.method} ({step.reason})")
            block = f"; padded block {_bytes(stage.block_bytes)}"
        else:
            lines.append(
                f"stage   {stage.name} = {stage.kind}({', '.join(stage.sources)}); shape {stage.shape}"
            )
            block = ""
        why = "" if stage.dtype_reason is None else f" ({stage.dtype_reason})"
        lines.append(
            f"  compute {stage.dtype}{why}, chunks {chunks}, {counts[stage.name]} tasks per wave{block}"
        )
        lines += [f"  note: {note}" for note in stage.notes]
    for target in plan.outputs:
        sharded = ""
        if target.shards is not None:  # a write task holds a whole shard, in the stage's dtype
            shard = math.prod(target.shards) * target.array.dtype.itemsize
            sharded = f" in shards {target.shards} (one file each, {_bytes(shard)} a task holds per shard)"
        lines.append(
            f"output  {target.stage} -> {target.path} ({target.format}): {target.dtype}, "
            f"chunks {target.chunks}{sharded}, {target.state}"
        )
        if target.note:
            lines.append(f"  note: {target.note}")
    peak, worst = plan.peak_memory(execution.concurrency or 1)
    waves = plan.waves(wave, execution.concurrency or 1)
    lines.append(f"run     {execution.describe()}; {_count(waves, 'wave')} of about {total} tasks each")
    if execution.concurrency is None:
        lines.append(
            f"memory  about {_bytes(worst.task_bytes)} per running task (stage {worst.name}: "
            f"{_bytes(worst.block_bytes)} padded block x {worst.blocks_per_task}), times the scheduler's "
            "threads"
        )
    else:
        lines.append(
            f"memory  estimated peak {_bytes(peak)} = {execution.concurrency} tasks at once x "
            f"{_bytes(worst.block_bytes)} block x {worst.blocks_per_task} blocks held per task "
            f"(stage {worst.name}), plus results waiting for their neighbours"
        )
    lines.append(
        f"waves   outputs are computed in waves of about {_bytes(wave)} of output each (on a running "
        "scheduler: an eighth of its workers' memory), each made as it comes, so neither peak memory "
        "nor the tasks sent at once grow with the volume"
    )
    expected = plan.expected_seconds()
    if expected is not None:
        seconds, chunks, cost, measured = expected
        lines.append(
            f"time    about {duration_text(seconds)} for all {chunks} chunks at {cost:.3g} s a chunk, as "
            f"measured by the run that left {measured} incomplete (with its scheduler)"
        )
    lines += execution.plan_lines()
    return redact_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
