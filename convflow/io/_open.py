"""open_input() and describe(): any supported path to a lazy InputImage, or to a summary."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import zarr

from convflow.engine import SPATIAL
from convflow.errors import InputFormatError, InputNotFoundError
from convflow.io import _glob, _hdf5, _ome, _stores, _tiff, _zarr
from convflow.io._image import InputImage, parse_axis_letters, parse_chunks
from convflow.io._npy import open_npy
from convflow.io._target import staging_record

_SUPPORTED = (
    "a zarr array or group (.zarr), OME-Zarr (.ome.zarr), TIFF (.tif, .tiff), HDF5 (.h5, .hdf5, .hdf), "
    ".npy, or a glob"
)


def open_input(
    path: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    axes: str | None = None,
    chunks: int | tuple[int, ...] | list[int] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> InputImage:
    """Open an image file lazily: nothing is read until the array is computed.

    Parameters
    ----------
    path : str or path-like
        A zarr v2 or v3 array or group, an OME-Zarr image, a TIFF, BigTIFF or
        OME-TIFF file, an HDF5 file (``.h5``, ``.hdf5``, ``.hdf``), a ``.npy``
        file (memory-mapped), or a glob such as ``"scans/*.tif"``, whose files
        are stacked in sorted order along a new leading batch axis.  A zarr
        array or group and OME-Zarr may also be a URL: ``s3://bucket/a.zarr``,
        ``gs://...`` (needs gcsfs), ``https://host/a.ome.zarr`` or
        ``file:///data/a.zarr``.
    dataset : str, optional
        The array inside a zarr group (e.g. ``"raw"`` or ``"a/b"``) or the
        dataset inside an HDF5 file (e.g. ``"/volumes/raw"``; needed unless
        the file holds only one); for
        OME-Zarr and pyramidal TIFF the resolution level (default ``"0"``,
        full resolution).
    axes : str, optional
        One letter per axis: ``x``, ``y`` and ``z`` are spatial, any other
        letter is a batch axis. Default: what the file records (OME-Zarr,
        OME-TIFF, ImageJ, zarr v3 dimension names, an HDF5 dataset's ``axes``,
        ``DIMENSION_LABELS`` or ``axistags`` attribute, a convflow output),
        else the last 2 (``yx``) or 3 (``zyx``) axes spatial and earlier ones
        batch axes (``tzyx``); a glob adds a leading ``b``.  For a glob, `axes`
        may name the axes of each file (``yx`` for 2-D TIFFs: the files then
        run along a leading batch axis ``b``) or those of the whole stack
        (``tyx``).
    chunks : int or sequence of int, optional
        Working chunks, one length per axis (-1: the whole axis). Default: the
        storage chunks for zarr; about 32 MiB of whole rows, made of whole
        tiles, pages or HDF5 chunks, for TIFF, HDF5 and ``.npy``.
    storage_options : dict, optional
        For a URL: the options of its store (fsspec's, e.g. ``endpoint_url``,
        ``anon``, ``profile``, ``key`` and ``secret`` for S3).  Credentials
        otherwise come from the environment (``AWS_*`` variables,
        ``~/.aws``).  They are never recorded or shown.

    Returns
    -------
    InputImage
        The lazy dask array with its axes, format, scale and storage details.

    Raises
    ------
    InputNotFoundError
        `path` does not exist, or the glob matches nothing; a URL's bucket or
        object is missing.
    InputFormatError
        The format is unknown or unreadable; a group was given without
        `dataset`, or `dataset` is not in it; glob files differ in shape or
        dtype; the path is a convflow output that is still incomplete.
        The file names no axes, it has 3 or more, and the last one has 3 or
        4 entries (colour samples?), so the default guess would filter
        across them: `axes` is needed.
        A URL's store cannot be reached, or denies access.
    ArgumentError
        `axes` or `chunks` do not fit the array; `storage_options` are not
        options of the URL's store, or its package is not installed.

    See Also
    --------
    write_output, describe

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "image.npy")
    >>> np.save(path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    >>> image = open_input(path, chunks=(2, 4))
    >>> image.axes, image.shape, image.chunks
    ('yx', (3, 4), ((2, 1), (4,)))
    >>> int(image.array.sum().compute())
    66
    """
    path = _stores.local_path(os.fspath(path))
    options = _stores.check_storage_options(storage_options)
    if _stores.is_remote(path):
        image = _refuse_incomplete(_open_remote(path, dataset, chunks, options))
    else:
        image = _refuse_incomplete(_open(path, dataset, chunks, _refuse_incomplete))
    if axes is None:
        return _refuse_a_colour_guess(image)
    if image.format == "glob":
        letters = _glob.parse_glob_axes(axes, image.shape, len(image.files))
        return dataclasses.replace(image, axes=letters, axes_guessed=False)
    return dataclasses.replace(image, axes=parse_axis_letters(axes, image.shape), axes_guessed=False)


def _refuse_a_colour_guess(image: InputImage) -> InputImage:
    """Return `image`, unless its axes are a guess whose last spatial axis looks like RGB(A) samples."""
    if image.axes_guessed and image.ndim >= 3 and image.shape[-1] in (3, 4) and image.axes[-1] in SPATIAL:
        raise InputFormatError(
            f"{image.path}: its last axis has {image.shape[-1]} entries, like the colour samples of an "
            f"RGB(A) image, and the file names no axes, so {image.axes!r} is only a guess that would filter "
            f"across them as {image.axes[-1]}; give input.axes (axes=), e.g. "
            f"{image.axes[:-3] + 'yxc'!r} for colour or {image.axes!r} if it is spatial"
        )
    return image


def _refuse_incomplete(image: InputImage) -> InputImage:
    """Return `image`, unless it is a convflow output whose run has not finished."""
    record = image.provenance
    if isinstance(record, dict) and record.get("incomplete"):
        raise _incomplete(image.path)
    return image


def _incomplete(path: str) -> InputFormatError:
    """The error for reading a convflow output whose run has not finished."""
    return InputFormatError(
        f"{path}: is an incomplete convflow output: the run writing it stopped before its "
        "last chunk. Finish it with --resume (resume=True), or write it again with --overwrite "
        "(overwrite=True)"
    )


def _staged_tiff(path: str) -> dict[str, Any] | None:
    """Return the record of the TIFF output `path` that a run stopped before writing, else None.

    Such a run left only the output's blocks, in its staging array beside it.
    """
    if os.path.lexists(path) or not _tiff.is_tiff_path(path):
        return None
    return staging_record(path)


def _open(
    path: str, dataset: str | None, chunks: object, check: Callable[[InputImage], InputImage] = lambda i: i
) -> InputImage:
    """Open `path` by its format; `check` vets each file of a glob."""
    if _glob.is_glob(path):
        image = _glob.open_glob(path, lambda file: check(_open_one(file, dataset, None)))
        working = parse_chunks(chunks, image.shape)
        return image if working is None else dataclasses.replace(image, array=image.array.rechunk(working))
    return _open_one(path, dataset, chunks)


def _open_one(path: str, dataset: str | None, chunks: object) -> InputImage:
    """Open one file or store by its format."""
    if not os.path.exists(path):
        if _staged_tiff(path) is not None:
            raise _incomplete(path)
        folder = os.path.dirname(os.path.abspath(path))
        hint = "" if os.path.isdir(folder) else f"; its folder {folder} does not exist either"
        raise InputNotFoundError(f"{path}: no such file or directory{hint}")
    if os.path.isdir(path):
        if not _zarr.is_zarr_store(path):
            raise InputFormatError(
                f"{path}: is a folder without zarr metadata (zarr.json, .zarray or .zgroup); "
                f"convflow reads {_SUPPORTED}; for a folder of TIFF files give a glob, e.g. {path}/*.tif"
            )
        return _open_zarr(path, dataset, chunks)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        _no_dataset(path, dataset)
        return open_npy(path, chunks)
    if _tiff.is_tiff_path(path):
        return _tiff.open_tiff(path, dataset, chunks)
    if _hdf5.is_hdf5_path(path):
        return _hdf5.open_hdf5(path, dataset, chunks)
    raise InputFormatError(
        f"{path}: unknown file type {suffix or '(no extension)'!r}; convflow reads {_SUPPORTED}"
    )


def _open_remote(path: str, dataset: str | None, chunks: object, options: dict[str, Any]) -> InputImage:
    """Open a zarr array, group member or OME-Zarr level at a remote URL, or raise naming the URL."""
    # A "?" in a URL starts its query, not a pattern.
    name = path.split("?", 1)[0]
    if "*" in name or _tiff.is_tiff_path(name) or _hdf5.is_hdf5_path(name) or name.endswith(".npy"):
        raise InputFormatError(
            f"{_stores.redact_text(path)}: convflow reads zarr arrays and groups and OME-Zarr from URLs; "
            "copy TIFF, HDF5, .npy files or globs to a local disk first"
        )
    _stores.probe_readable(path, options)
    image = _open_zarr(path, dataset, chunks, options)
    return dataclasses.replace(image, storage_options=options or None)


def _open_zarr(
    path: str, dataset: str | None, chunks: object, options: dict[str, Any] | None = None
) -> InputImage:
    """Open a zarr array, a group member, or an OME-Zarr level (locally or at a URL)."""
    node = _zarr.open_node(path, options)
    if isinstance(node, zarr.Array):
        _no_dataset(path, dataset)
        return _zarr.open_zarr_array(node, path, None, chunks)
    if _ome.multiscales_of(node.attrs.asdict()):
        return _ome.open_ome(node, path, dataset, chunks)
    member = _zarr.pick_dataset(node, path, dataset)
    if isinstance(member, zarr.Group):
        if _ome.multiscales_of(member.attrs.asdict()):
            return dataclasses.replace(_ome.open_ome(member, path, None, chunks), dataset=dataset)
        raise InputFormatError(f"{path}: {dataset!r} is a group, not an array; name an array inside it")
    return _zarr.open_zarr_array(member, path, dataset, chunks)


def _no_dataset(path: str, dataset: str | None) -> None:
    """Raise when `dataset` is given for a file that holds a single array."""
    if dataset is not None:
        raise InputFormatError(
            f"{path}: holds a single array, so dataset={dataset!r} has nothing to pick; drop it"
        )


def describe(
    path: str | os.PathLike[str], *, dataset: str | None = None, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return what ``convflow inspect`` shows: shape, dtype, chunks, axes, codec, scale.

    Unlike `open_input`, this also describes incomplete outputs (``incomplete``
    is then True), zarr groups given without `dataset` (their arrays are
    listed under ``arrays``) and HDF5 files given without `dataset` (their
    datasets are listed under ``datasets``, with shape, dtype and chunks,
    unless the file holds only one).

    Parameters
    ----------
    path : str or path-like
        Anything `open_input` reads.
    dataset, storage_options : optional
        As for `open_input`.

    Returns
    -------
    dict
        ``path``, ``format``, ``shape``, ``dtype``, ``chunks`` (on disk),
        ``axes``, ``codec``, and where known ``dataset``, ``scale``,
        ``translation``, ``units``, ``files`` (the number of files of a glob),
        ``incomplete``, ``convflow`` (the provenance record), ``axes_guessed``
        (True when the file names no axes), and for OME-Zarr ``ngff`` (the
        version) and ``levels``.

    Raises
    ------
    InputNotFoundError, InputFormatError
        As for `open_input`.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "image.npy")
    >>> np.save(path, np.zeros((3, 4), np.float32))
    >>> print(format_description(describe(path)))  # doctest: +ELLIPSIS
    path:   .../image.npy
    format: npy
    shape:  (3, 4)
    dtype:  float32
    axes:   yx (guessed: the file names no axes; set input.axes if they are wrong)
    chunks: (3, 4)
    codec:  none
    """
    path = _stores.local_path(os.fspath(path))
    options = _stores.check_storage_options(storage_options)
    remote = _stores.is_remote(path)
    if remote:
        _stores.probe_readable(path, options)
    if dataset is None and not _glob.is_glob(path) and _zarr.is_zarr_store(path, options):
        node = _zarr.open_node(path, options)
        if isinstance(node, zarr.Group) and not _ome.multiscales_of(node.attrs.asdict()):
            arrays = {
                name: {"shape": tuple(a.shape), "dtype": str(a.dtype), "chunks": tuple(a.chunks)}
                for name, a in node.members(max_depth=None)
                if isinstance(a, zarr.Array)
            }
            return {"path": _stores.redact_text(path), "format": "zarr-group", "arrays": arrays}
    if (
        dataset is None
        and _hdf5.is_hdf5_path(path)
        and os.path.isfile(path)
        and not _hdf5.holds_one_dataset(path)
    ):
        return {"path": path, "format": "hdf5", "datasets": _hdf5.list_datasets(path)}
    staged = None if dataset is not None or remote else _staged_tiff(path)
    if staged is not None:
        output = staged["output"]
        described = {"shape": tuple(output.get("shape", ())), "dtype": output.get("dtype")}
        described |= {"axes": output.get("axes"), "chunks": tuple(output.get("chunks", ()))}
        codec = (output.get("compression") or [None])[0]
        described |= {"codec": codec, "convflow": staged, "incomplete": True}
        return {"path": path, "format": output["format"], **described}
    image = _open_remote(path, dataset, None, options) if remote else _open(path, dataset, None)
    info: dict[str, Any] = {
        "path": _stores.redact_text(path) if remote else path,
        "format": image.format,
        "shape": image.shape,
        "dtype": str(image.dtype),
        "axes": image.axes,
        "chunks": image.storage_chunks or tuple(c[0] for c in image.chunks),
        "codec": image.codec,
    }
    if image.axes_guessed:
        info["axes_guessed"] = True
    if image.format == "ome-zarr" and not _glob.is_glob(path):
        info |= _ome.summary(_zarr.open_node(path, options), image.dataset if dataset is not None else None)
    optional = {"dataset": image.dataset, "scale": image.scale, "translation": image.translation}
    optional |= {"units": image.units, "files": len(image.files) or None, "convflow": image.provenance}
    info |= {key: value for key, value in optional.items() if value is not None}
    if isinstance(image.provenance, dict):
        info["incomplete"] = bool(image.provenance.get("incomplete"))
    return info


def format_description(info: dict[str, Any]) -> str:
    """Return `describe`'s dict as aligned ``key: value`` lines (the provenance record left out)."""
    listed = "arrays" if "arrays" in info else "datasets" if "datasets" in info else None
    if listed is not None:
        kind = "zarr group; arrays" if listed == "arrays" else "HDF5 file; datasets"
        lines = [f"path:   {info['path']}", f"format: {kind} (pass one as dataset):"]
        lines += [
            f"  {name}: shape {a['shape']}, {a['dtype']}, chunks {a['chunks'] or 'none (contiguous)'}"
            for name, a in info[listed].items()
        ]
        return "\n".join(lines)
    shown = {key: value for key, value in info.items() if key not in ("convflow", "axes_guessed")}
    if info.get("axes_guessed"):
        shown["axes"] = f"{info['axes']} (guessed: the file names no axes; set input.axes if they are wrong)"
    width = max(map(len, shown)) + 1
    return "\n".join(f"{key + ':':<{width}} {value}" for key, value in shown.items())
