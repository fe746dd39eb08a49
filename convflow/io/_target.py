"""check_output(): every output checked, and its layout made canonical, before any compute."""

from __future__ import annotations

import errno
import fnmatch
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from convflow.engine import parse_result_dtype
from convflow.errors import ArgumentError, OutputError, OutputExistsError, OutputPathError, ResumeError
from convflow.io import _glob, _lease, _ome, _stores, _tiff, _zarr
from convflow.io._image import (
    MAX_BLOCKS_PER_AXIS,
    InputImage,
    parse_axis_letters,
    parse_chunks,
    too_many_blocks,
)
from convflow.io._provenance import describe_inputs, first_difference, new_record

FORMATS = ("zarr", "zarr-v2", "ome-zarr", "ome-zarr-v0.5", "tiff", "bigtiff")
ZARR_FORMATS = frozenset({"zarr", "zarr-v2", "ome-zarr", "ome-zarr-v0.5"})
# The formats stored as zarr v3, the only version with shards.
SHARDED_FORMATS = frozenset({"zarr", "ome-zarr-v0.5"})
TIFF_FORMATS = frozenset({"tiff", "bigtiff"})
# Past this many bytes a classic TIFF's 32-bit offsets may overflow, so BigTIFF is written.
_BIGTIFF_BYTES = 2**32 - 2**25


@dataclass(frozen=True)
class Layout:
    """How an output is stored: all of it is recorded, and must match for a resume."""

    format: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]  # storage chunks; for TIFF (1, ..., tile height, tile width)
    blocks: tuple[int, ...]  # the first dask chunk per axis: how the result was computed
    compression: tuple[str, int | None]
    axes: str
    scale: tuple[float, ...] | None
    translation: tuple[float, ...] | None
    units: tuple[str | None, ...] | None
    pyramid_levels: int
    pyramid_method: str = "mean"  # PYRAMID_METHODS; "mean" when there is no pyramid
    shards: tuple[int, ...] | None = None  # zarr v3 shards, each a whole number of `chunks`; None: unsharded


@dataclass(frozen=True)
class OutputPlan:
    """A checked output: what exists at `path`, and what writing it will do.

    `state` is ``new`` (nothing there), ``replace`` (overwrite=True), ``resume``
    (an incomplete convflow output that this run finishes) or ``complete``
    (resume=True on a finished output: nothing to do).  A TIFF output is
    computed into the zarr array `staging` beside it, then assembled from it;
    an interrupted TIFF run leaves that array, which ``resume`` finishes.
    """

    path: str
    format: str
    state: str
    layout: Layout | None
    record: dict[str, Any]
    stored: dict[str, Any] | None
    staging: str | None = None
    # For a URL: the options of its store (they may hold credentials: never shown).
    storage_options: dict[str, Any] | None = field(default=None, repr=False)


def check_output(
    path: str | os.PathLike[str],
    array: Any = None,
    *,
    format: str | None = None,
    dtype: DTypeLike | None = None,
    chunks: int | Sequence[int] | None = None,
    compression: str | dict[str, Any] | None = None,
    axes: str | None = None,
    scale: Sequence[float] | None = None,
    translation: Sequence[float] | None = None,
    units: Sequence[str | None] | None = None,
    pyramid_levels: int = 1,
    pyramid_method: str = "mean",
    shards: int | Sequence[int] | None = None,
    inputs: Sequence[InputImage | str | os.PathLike[str]] = (),
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> OutputPlan:
    """Check an output before anything is computed; touch nothing but a probe file, removed at once.

    Takes the arguments of `write_output` (which calls it first), so a caller
    can check every output of a run before the first one is computed.
    `array` may be a lazy dask array; only its shape, dtype and chunks are used.
    Without `array`, only the path, the inputs and the provenance are checked.

    Returns
    -------
    OutputPlan
        The canonical form of the arguments, and whether the output is new,
        replaced, resumed, or already complete.

    Raises
    ------
    OutputLockedError
        Another live run is writing the output (it holds its lease, see
        `write_output`); the message names that run.
    OutputExistsError
        The output exists and neither `overwrite` nor `resume` applies (an
        incomplete output names both), or it exists but is not of the kind
        convflow writes (never removed, even with `overwrite`); for a TIFF
        output, also when something other than convflow's staging array is at
        the staging path (`OutputPlan.staging`).
    OutputPathError
        The output (or a TIFF output's staging array) is an input, lies inside
        one, contains one, or matches an input glob; it lies inside a zarr
        store; or its format cannot be told from its name.
    ResumeError
        `resume` on an incomplete output written with other provenance,
        inputs, layout or convflow version.
    OutputError
        The folder the output would go in cannot be created or written.
    ArgumentError
        A bad `format`, `dtype`, `chunks`, `compression`, `axes`, `scale`,
        `translation`, `units`, `pyramid_levels`, `pyramid_method`, `shards`
        (not whole chunks, or not a zarr v3 output) or `provenance`.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> plan = check_output(os.path.join(folder, "out.zarr"), np.zeros((4, 6), np.float32))
    >>> plan.format, plan.state, plan.layout.chunks, plan.layout.compression
    ('zarr', 'new', (4, 6), ('zstd', 3))
    """
    path = _stores.local_path(os.fspath(path))
    options = _stores.check_storage_options(storage_options)
    remote = _stores.is_remote(path)
    if array is not None and not hasattr(array, "dtype"):
        array = np.asarray(array)
    if overwrite and resume:
        raise ArgumentError(
            "overwrite=True and resume=True exclude each other: --resume finishes an incomplete output, "
            "--overwrite writes it again from the start; pass one"
        )
    fmt = output_format(path, format)
    if not isinstance(pyramid_levels, int) or isinstance(pyramid_levels, bool) or pyramid_levels < 1:
        raise ArgumentError(
            f"pyramid_levels={pyramid_levels!r} must be a positive integer (1: full size only)"
        )
    if pyramid_levels != 1 and fmt not in ("ome-zarr", "ome-zarr-v0.5"):
        raise ArgumentError(f"pyramid_levels={pyramid_levels!r} needs an OME-Zarr output (a .ome.zarr path)")
    if shards is not None and fmt not in SHARDED_FORMATS:
        raise ArgumentError(
            f"shards={shards!r}: only zarr v3 stores shards, and this output is written as {fmt}; drop "
            "shards, or write zarr v3 (format 'zarr', a .zarr path) or OME-Zarr 0.5 (format 'ome-zarr-v0.5')"
        )
    if pyramid_method not in _ome.PYRAMID_METHODS:
        raise ArgumentError(
            f"pyramid_method={pyramid_method!r} is not a way to make pyramid levels; use one of "
            f"{', '.join(map(repr, _ome.PYRAMID_METHODS))}"
        )
    layout = (
        None
        if array is None
        else _layout(array, fmt, dtype, chunks, compression, axes, scale, translation, units, inputs)
    )
    if layout is not None:
        sharded = _shards(shards, layout.shape, layout.chunks, chunks is not None)
        layout = replace(layout, pyramid_levels=pyramid_levels, pyramid_method=pyramid_method, shards=sharded)
        if layout.format in TIFF_FORMATS and _tiff.is_ome_tiff_path(path):
            _tiff.check_ome_tiff_axes(layout.axes)
    fmt = fmt if layout is None else layout.format
    if remote and fmt in TIFF_FORMATS:
        raise OutputPathError(
            f"{_stores.redact_text(path)}: TIFF outputs are written to local paths; write a zarr or OME-Zarr "
            "output (.zarr, .ome.zarr) to an object store, or the TIFF to a local path"
        )
    staging = _tiff.staging_path(path) if fmt in TIFF_FORMATS else None
    for written in (path, staging):
        if written is not None:
            _check_not_input(written, inputs)
    if remote:
        _stores.probe_writable(path, options)  # a missing bucket, denied access, no server: said now
        _check_not_inside_a_remote_store(path, options)
    else:
        _check_not_inside_a_store(path)
    record = new_record(provenance, describe_inputs(inputs), None if layout is None else asdict(layout))
    _lease.check_free(path, options)
    if remote:
        state, stored = _existing_remote(path, fmt, overwrite, resume, options)
    else:
        state, stored = (
            _existing_tiff(path, overwrite, resume) if staging else _existing(path, fmt, overwrite, resume)
        )
    if state == "resume":
        current = record if layout is not None else {**record, "output": stored.get("output")}  # type: ignore[union-attr]
        difference = first_difference(stored, current)  # type: ignore[arg-type]
        if difference:
            raise ResumeError(
                f"{_stores.redact_text(path)}: cannot resume: {difference}. The incomplete output was "
                "started with other settings; resume with those, or start again with --overwrite "
                "(overwrite=True)"
            )
    if state in ("new", "replace") and not remote:
        _check_writable(path)
    return OutputPlan(
        path=path,
        format=fmt,
        state=state,
        layout=layout,
        record=record,
        stored=stored,
        staging=staging,
        storage_options=options or None,
    )


def output_format(path: str, format: str | None) -> str:
    """Return the output format: `format` checked, or told from the path's name.

    Examples
    --------
    >>> output_format("out/a.ome.zarr", None), output_format("b.tif", None), output_format("c", "zarr-v2")
    ('ome-zarr', 'tiff', 'zarr-v2')
    """
    if format is not None:
        if format not in FORMATS:
            raise ArgumentError(f"format={format!r} is not an output format; use one of {', '.join(FORMATS)}")
        return format
    name = os.path.basename(path.rstrip("/\\")).lower()
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    if _tiff.is_tiff_path(name):
        return "tiff"
    raise OutputPathError(
        f"{path}: the output format cannot be told from the name; end it in .zarr, .ome.zarr or .tif, "
        f"or pass format= one of {', '.join(FORMATS)}"
    )


def _layout(
    array: Any,
    fmt: str,
    dtype: Any,
    chunks: Any,
    compression: Any,
    axes: Any,
    scale: Any,
    translation: Any,
    units: Any,
    inputs: Sequence[Any],
) -> Layout:
    """Return the canonical storage layout of `array` written as `fmt`, or raise naming the bad argument."""
    shape = tuple(int(n) for n in array.shape)
    ndim = len(shape)
    given = np.dtype(array.dtype)
    if dtype is None and given.kind not in "biuf":
        raise ArgumentError(f"a {given} result cannot be stored as it is; pass dtype=, e.g. dtype='float32'")
    result_dtype = parse_result_dtype(dtype, np.dtype(np.uint8) if given.kind == "b" else given)
    like = next((i for i in inputs if isinstance(i, InputImage) and i.ndim == ndim), None)
    letters = parse_axis_letters(axes if axes is not None else getattr(like, "axes", None), shape)
    dask_chunks = getattr(array, "chunks", None)
    blocks = tuple(c[0] if c else 1 for c in dask_chunks) if isinstance(dask_chunks, tuple) else shape
    storage = parse_chunks(chunks, shape) or tuple(max(b, 1) for b in blocks)
    if fmt in TIFF_FORMATS:
        if ndim < 2:
            raise ArgumentError(f"a TIFF output needs at least 2 axes; this result has shape {shape}")
        storage = (1,) * (ndim - 2) + _tiff.tiff_tile(shape, None if chunks is None else storage)
    if (found := too_many_blocks(shape, storage)) is not None:
        axis, count = found
        raise ArgumentError(
            f"chunks={list(storage)}: a {shape} output in these chunks has {count:,} of them along axis "
            f"{axis}, more than the {MAX_BLOCKS_PER_AXIS:,} convflow can plan along one axis; give larger "
            "chunks"
        )
    if fmt in ("ome-zarr", "ome-zarr-v0.5"):
        _ome.check_ome_axes(letters)
    if fmt == "tiff" and math.prod(shape) * result_dtype.itemsize > _BIGTIFF_BYTES:
        fmt = "bigtiff"
    return Layout(
        format=fmt,
        shape=shape,
        dtype=str(result_dtype),
        chunks=storage,
        blocks=blocks,
        compression=_compression(compression, fmt),
        axes=letters,
        scale=_per_axis(scale, getattr(like, "scale", None), ndim, "scale", float),
        translation=_per_axis(translation, getattr(like, "translation", None), ndim, "translation", float),
        units=_per_axis(
            units, getattr(like, "units", None), ndim, "units", lambda u: None if u is None else str(u)
        ),
        pyramid_levels=1,
    )


def _shards(
    shards: Any, shape: tuple[int, ...], chunks: tuple[int, ...], chunks_given: bool = True
) -> tuple[int, ...] | None:
    """Return the shard shape: a whole number of `chunks` per axis (-1: the whole axis), or raise.

    Examples
    --------
    >>> _shards([4, -1], (10, 7), (2, 3))
    (4, 9)
    >>> _shards([5, 3], (10, 7), (2, 3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.ArgumentError: shards=[5, 3]: ... a multiple of chunks (2, 3) ..., e.g. shards=[4, 3]
    """
    if shards is None:
        return None
    doubled = [c * 2 if c < n else c for c, n in zip(chunks, shape, strict=True)]
    if not isinstance(shards, int | np.integer) and len(list(shards)) != len(shape):
        raise ArgumentError(
            f"shards={shards!r} needs one entry per axis of shape {shape}, each a multiple of chunks "
            f"{chunks}, e.g. shards={doubled}"
        )
    parsed: tuple[int, ...] = parse_chunks(shards, shape, "shards")  # type: ignore[assignment]
    whole = [shards] * len(shape) if isinstance(shards, int | np.integer) else list(shards)
    # -1 (the whole axis) is rounded up to whole chunks, as zarr asks of every shard.
    result = tuple(
        -(-n // c) * c if given is None or given == -1 else size
        for given, size, n, c in zip(whole, parsed, shape, chunks, strict=True)
    )
    if any(size % c for size, c in zip(result, chunks, strict=True)):
        example = [max(1, round(size / c)) * c for size, c in zip(result, chunks, strict=True)]
        where = "" if chunks_given else " (the result's blocks: no chunks were given; give chunks too)"
        raise ArgumentError(
            f"shards={shards!r}: a shard holds whole chunks, so each entry must be a multiple of chunks "
            f"{chunks}{where} along every axis, e.g. shards={example}"
        )
    return result  # whole chunks: never more shards along an axis than the chunks already checked


def _compression(compression: Any, fmt: str) -> tuple[str, int | None]:
    """Return (codec, level) for `compression`: None (the default), a codec name, or {codec, level}."""
    is_zarr = fmt in ZARR_FORMATS
    if compression is None:
        compression = {"codec": "zstd", "level": 3} if is_zarr else "zlib"
    spec = (
        {"codec": "none" if compression is False else compression}
        if not isinstance(compression, dict)
        else compression
    )
    unknown = sorted(set(spec) - {"codec", "level"})
    codec, level = spec.get("codec"), spec.get("level")
    if unknown or not isinstance(codec, str) or not (level is None or isinstance(level, int)):
        raise ArgumentError(
            f"compression={compression!r} must be a codec name or {{'codec': name, 'level': int}}, "
            "e.g. {'codec': 'zstd', 'level': 3}"
        )
    if is_zarr:
        _zarr.compressors(codec.lower(), level, 3)
    else:
        _tiff.parse_tiff_codec(codec.lower(), level)
    return (codec.lower(), level)


def _per_axis(given: Any, carried: Any, ndim: int, what: str, kind: Any) -> tuple[Any, ...] | None:
    """Return one `kind` value per axis from `given`, else from the input, else None."""
    values = given if given is not None else carried
    if values is None:
        return None
    try:
        result = tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        result = ()
    if len(result) != ndim or (what == "scale" and not all(v > 0 for v in result)):
        raise ArgumentError(
            f"{what}={given!r} needs one {'positive number' if what == 'scale' else 'value'} per axis "
            f"({ndim} axes)"
        )
    return result


def _check_not_input(path: str, inputs: Sequence[Any]) -> None:
    """Refuse an output that is an input, lies inside one, holds one, or matches an input glob.

    Paths are compared resolved (`os.path.realpath`), URLs in their normal
    form (`_stores.normalise`: scheme and host in lower case, no userinfo, no
    ``//`` or ``.`` parts, no trailing ``/``); a path and a URL never name
    the same data.
    """
    out_sep, out = _location(path)
    for item in inputs:
        given = item.path if isinstance(item, InputImage) else _stores.local_path(os.fspath(item))
        files = item.files if isinstance(item, InputImage) else ()
        if (
            out_sep == os.sep
            and _glob.is_glob(given)
            and fnmatch.fnmatch(os.path.abspath(path), os.path.abspath(given))
        ):
            raise OutputPathError(
                f"{path}: matches the input pattern {given!r}, so a later run would read it as an input; "
                "write it elsewhere"
            )
        for source in (given, *files):
            sep, where = _location(source)
            shown = _stores.redact_text(source)
            if sep != out_sep:
                continue  # one local, one remote
            if out == where:
                problem = "is the input"
            elif out.startswith(where + sep):
                problem = f"lies inside the input {shown}"
            elif where.startswith(out + sep):
                problem = f"contains the input {shown}, which writing it would destroy"
            else:
                continue
            raise OutputPathError(
                f"{_stores.redact_text(path)}: {problem}; convflow never writes over its input: choose "
                "another path"
            )


def _location(path: str) -> tuple[str, str]:
    """`path` as `_check_not_input` compares it: (its separator, its resolved or normal form)."""
    if _stores.is_remote(path):
        return "/", _stores.normalise(path)
    return os.sep, os.path.realpath(path)


def _check_not_inside_a_remote_store(path: str, options: dict[str, Any]) -> None:
    """`_check_not_inside_a_store` for a URL: no prefix above it (in its bucket) holds zarr metadata."""
    normal = _stores.normalise(path)
    kind, rest = normal.split("://", 1)
    parts = rest.split("/")
    for end in range(len(parts) - 1, 1, -1):  # prefixes below the bucket, innermost first
        above = f"{kind}://{'/'.join(parts[:end])}"
        if _zarr.is_zarr_store(above, options):
            raise OutputPathError(
                f"{_stores.redact_text(path)}: lies inside the zarr store {above}, which replacing it would "
                "delete with this output; write it beside the store instead"
            )


def _existing_remote(
    path: str, fmt: str, overwrite: bool, resume: bool, options: dict[str, Any]
) -> tuple[str, dict[str, Any] | None]:
    """`_existing` for a URL: what objects are under the output's prefix, and its record."""
    try:
        found = _stores.exists(path, options)
    except _stores.store_errors() as err:
        raise _stores.store_error(path, err, writing=True) from err
    if not found:
        return "new", None
    if not _zarr.is_zarr_store(path, options):
        raise OutputExistsError(
            f"{_stores.redact_text(path)}: objects exist under this prefix and are not a zarr store; "
            "convflow replaces only outputs of its own kind, even with --overwrite: choose another path, "
            "or remove them yourself"
        )
    return _state(_stores.redact_text(path), stored_record(path, fmt, options), overwrite, resume)


def _check_not_inside_a_store(path: str) -> None:
    """Refuse an output inside a zarr store: replacing that store (--overwrite) would delete it too."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder != os.path.dirname(folder):
        if _zarr.is_zarr_store(folder):
            raise OutputPathError(
                f"{path}: lies inside the zarr store {folder}, which replacing it would delete with "
                "this output; write it beside the store instead"
            )
        folder = os.path.dirname(folder)


def _existing(path: str, fmt: str, overwrite: bool, resume: bool) -> tuple[str, dict[str, Any] | None]:
    """Return the state of whatever is at `path` (new, replace, resume, complete) and its record."""
    if not os.path.lexists(path):
        return "new", None
    is_zarr = fmt in ZARR_FORMATS
    if not (_zarr.is_zarr_store(path) if is_zarr else os.path.isfile(path)):
        kind = "a zarr store" if is_zarr else "a file"
        raise OutputExistsError(
            f"{path}: exists and is not {kind}; convflow replaces only outputs of its own kind, even with "
            "--overwrite: choose another path, or remove it yourself"
        )
    return _state(path, stored_record(path, fmt), overwrite, resume)


def _existing_tiff(path: str, overwrite: bool, resume: bool) -> tuple[str, dict[str, Any] | None]:
    """`_existing` for a TIFF output, whose blocks an interrupted run left in its staging array.

    The staging array stands for the output while it exists: the file beside
    it, if any, is an assembly cut short (however unreadable), or the
    incomplete TIFF of an older convflow, unless its record says it is
    finished, as it does when a run stopped between finishing the TIFF and
    removing the staging array.  Only convflow makes a staging array, and
    only where the TIFF path was free, replaced with --overwrite, or an
    incomplete convflow output, so that file is convflow's.
    """
    staged = _staged_record(path)
    if staged is None:
        return _existing(path, "tiff", overwrite, resume)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise OutputExistsError(
            f"{path}: exists and is not a file; convflow replaces only outputs of its own kind, even with "
            "--overwrite: choose another path, or remove it yourself"
        )
    record = stored_record(path, "tiff") if os.path.lexists(path) else None
    if record is not None and not record.get("incomplete"):
        return _state(path, record, overwrite, resume)
    return _state(path, {**staged, "incomplete": True}, overwrite, resume)


def staging_record(path: str) -> dict[str, Any] | None:
    """Return the record of the staging array of TIFF output `path`, or None if convflow's is not there."""
    staging = _tiff.staging_path(path)
    record = stored_record(staging, "zarr") if _zarr.is_zarr_store(staging) else None
    output = record.get("output") if record else None
    return record if isinstance(output, dict) and output.get("format") in TIFF_FORMATS else None


def _staged_record(path: str) -> dict[str, Any] | None:
    """`staging_record`, refusing anything else at the staging path."""
    record = staging_record(path)
    staging = _tiff.staging_path(path)
    if record is None and os.path.lexists(staging):
        raise OutputExistsError(
            f"{staging}: exists and is not convflow's staging array for {path}, where a TIFF output's "
            "blocks are stored before the file is written; convflow replaces only its own, even with "
            "--overwrite: choose another output path, or remove it yourself"
        )
    return record


def _state(
    path: str, record: dict[str, Any] | None, overwrite: bool, resume: bool
) -> tuple[str, dict[str, Any] | None]:
    """Return what a run does to the output `path` whose record is `record` (None: not convflow's)."""
    incomplete = bool(record and record.get("incomplete"))
    if resume:
        if record is None:
            raise OutputExistsError(
                f"{path}: exists but was not written by convflow, so there is nothing to resume; "
                "--overwrite (overwrite=True) replaces it"
            )
        return ("resume" if incomplete else "complete"), record
    if overwrite:
        return "replace", record
    if incomplete:
        raise OutputExistsError(
            f"{path}: is an incomplete output of an interrupted run; pass --resume (resume=True) to finish "
            "it, or --overwrite (overwrite=True) to write it again"
        )
    raise OutputExistsError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")


def stored_record(
    path: str, fmt: str, storage_options: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """Return the `convflow` record of an existing output, or None when it has none."""
    try:
        if fmt in ZARR_FORMATS:
            record = _zarr.open_node(path, storage_options).attrs.get("convflow")
        else:
            record = _tiff.read_tiff_record(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# What os.open says where a file system cannot make an unnamed file.
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}


def _check_writable(path: str) -> None:
    """Raise OutputError unless the output's folder exists and is writable, or can be made."""
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(
            f"{path}: cannot be written: {existing} is not a folder; choose another output path"
        )
    # Probed by creating a file: os.access says yes to root everywhere, even in /proc or on a read-only
    # mount, where the run would fail only after computing.
    try:
        _probe_file(existing)
    except OSError as err:
        reason = err.strerror or str(err)
        raise OutputError(
            f"{path}: cannot be written: creating a file in {existing} failed ({reason}); choose another "
            "output path"
        ) from err


def _probe_file(folder: str) -> None:
    """Create a file in `folder` and let it go, leaving nothing there even if the process is killed.

    An unnamed O_TMPFILE file never appears in the folder; where the file system has no O_TMPFILE
    (NFS, some FUSE mounts), a named file is created and removed at once.
    """
    unnamed = getattr(os, "O_TMPFILE", None)  # Linux only
    if unnamed is not None:
        try:
            os.close(os.open(folder, unnamed | os.O_WRONLY, 0o600))
            return
        except OSError as err:
            if err.errno not in _NO_TMPFILE:
                raise
    descriptor, probe = tempfile.mkstemp(prefix=".convflow-probe-", dir=folder)
    os.close(descriptor)
    os.remove(probe)
