"""HDF5 datasets (.h5, .hdf5, .hdf): lazy reading by whole HDF5 chunks, axes and pixel sizes from attributes.

Every process opens the file itself: a block's task carries only the file's
path and the dataset's name (`LazyFile`), never an h5py handle, so the
processes and distributed schedulers each read through their own. Threads of
one process share one handle; h5py serialises every call into libhdf5 with
its global lock (https://docs.h5py.org/en/stable/threads.html), so that is
safe, and the filtering of one block overlaps the reading of the next.
"""

from __future__ import annotations

import difflib
import importlib
import json
from typing import Any

import numpy as np

from convflow.errors import InputFormatError
from convflow.io._image import InputImage, LazyFile, auto_chunks, default_axes, parse_chunks

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
# Filters libhdf5 decodes itself, by id: name shown by `convflow inspect`.
_BUILTIN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset"}
# Registered filter ids that the hdf5plugin package decodes (hdf5plugin.FILTERS, inverted).
_PLUGIN_FILTERS = {
    307: "bzip2",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32013: "zfp",
    32015: "zstd",
    32017: "sz",
    32018: "fcidecomp",
    32024: "sz3",
    32026: "blosc2",
    32028: "sperr",
    32033: "htj2k",
}
_PLUGIN_PACKAGE = "hdf5plugin"
# Axis names that tools write as words (ilastik's axistags, NeXus, xarray): the letter convflow uses.
_AXIS_WORDS = {"time": "t", "channel": "c", "channels": "c", "c": "c", "z": "z", "y": "y", "x": "x"}


def is_hdf5_path(path: str) -> bool:
    """Return whether `path` names an HDF5 file by its suffix.

    Examples
    --------
    >>> is_hdf5_path("scan.H5"), is_hdf5_path("a.hdf5"), is_hdf5_path("a.zarr")
    (True, True, False)
    """
    return path.lower().endswith(HDF5_SUFFIXES)


def open_hdf5(path: str, dataset: str | None, chunks: object) -> InputImage:
    """Open the dataset `dataset` of the HDF5 file at `path` lazily; only metadata is read now.

    `dataset` may be left out when the file holds one dataset only.
    """
    import h5py  # here, not at the top: `import convflow` stays quick for the CLI

    try:
        with h5py.File(path, "r") as file:
            node = _pick(file, path, dataset, h5py)
            name = node.name
            shape, dtype, storage = tuple(int(n) for n in node.shape), node.dtype, node.chunks
            filters = _filters(node)
            needs_plugin = _check_filters(node, path, filters)
            axes = _axes_from_attributes(node, len(shape))
            scale, units = _scale_from_attributes(node, axes or default_axes(len(shape)))
    except OSError as err:
        raise InputFormatError(f"{path}: not a readable HDF5 file ({err})") from err
    if dtype.kind not in "biuf" or not shape:
        raise InputFormatError(
            f"{path}: dataset {name!r} holds {len(shape)}-d {dtype} data; convflow reads numeric "
            "arrays with at least one axis"
        )
    storage = tuple(int(n) for n in storage) if storage is not None else None
    working = parse_chunks(chunks, shape) or auto_chunks(shape, dtype.itemsize, storage)
    array = LazyFile(_Dataset, (path, name, needs_plugin), shape, dtype).to_dask(path, working)
    return InputImage(
        array=array,
        axes=axes or default_axes(len(shape)),
        path=path,
        format="hdf5",
        dataset=name,
        scale=scale,
        units=units,
        storage_chunks=storage,
        codec=" + ".join(_filter_text(code, values) for code, values in filters) or "none",
        axes_guessed=axes is None,
    )


def holds_one_dataset(path: str) -> bool:
    """Return whether the HDF5 file `path` holds exactly one dataset (so it needs no `dataset`)."""
    return len(list_datasets(path)) == 1


def list_datasets(path: str) -> dict[str, dict[str, Any]]:
    """Return every dataset of the HDF5 file `path`: name -> shape, dtype, chunks (None: contiguous)."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return {
                name: {"shape": node.shape, "dtype": str(node.dtype), "chunks": node.chunks}
                for name, node in _datasets(file, h5py).items()
            }
    except OSError as err:
        raise InputFormatError(f"{path}: not a readable HDF5 file ({err})") from err


class _Dataset:
    """One dataset of an HDF5 file, opened in the process that reads it; closed with its LazyFile."""

    def __init__(self, path: str, name: str, needs_plugin: bool):
        if needs_plugin:
            importlib.import_module(_PLUGIN_PACKAGE)  # registers its filters with libhdf5 in this process
        import h5py

        self.file = h5py.File(path, "r")
        self.node = self.file[name]

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.node[key]

    def close(self) -> None:
        """Close the file."""
        self.file.close()


def _datasets(file: Any, h5py: Any) -> dict[str, Any]:
    """Return every dataset in `file` by its absolute name, in the file's order."""
    found: dict[str, Any] = {}

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            found["/" + name] = node

    file.visititems(visit)
    return found


def _pick(file: Any, path: str, dataset: str | None, h5py: Any) -> Any:
    """Return the dataset `dataset` of `file` (None: its only one), or raise listing its datasets."""
    datasets = _datasets(file, h5py)
    listing = ", ".join(datasets) or "none"
    if dataset is None and len(datasets) == 1:
        return next(iter(datasets.values()))
    if dataset is None:
        raise InputFormatError(
            f"{path}: is an HDF5 file; name the dataset to read with dataset=... (input.dataset in a "
            f"config), one of: {listing}"
        )
    name = "/" + dataset.strip("/")
    if name not in datasets:
        what = "a group, not a dataset" if isinstance(file.get(name), h5py.Group) else "not in it"
        same_leaf = [n for n in datasets if n.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1]]
        close = same_leaf or difflib.get_close_matches(name, list(datasets), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputFormatError(
            f"{path}: dataset {dataset!r} is {what}.{hint} Datasets in this file: {listing}"
        )
    return datasets[name]


def _filters(node: Any) -> list[tuple[int, tuple[int, ...]]]:
    """Return the dataset's filter pipeline as (filter id, parameters), in order."""
    plist = node.id.get_create_plist()
    filters = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, _name = plist.get_filter(i)
        filters.append((int(code), tuple(int(v) for v in values)))
    return filters


def _filter_text(code: int, values: tuple[int, ...]) -> str:
    """Return one filter as `convflow inspect` shows it.

    Examples
    --------
    >>> _filter_text(1, (4,)), _filter_text(32015, (3,)), _filter_text(40000, ())
    ('gzip(level=4)', 'zstd', 'filter 40000')
    """
    if code == 1 and values:
        return f"gzip(level={values[0]})"
    return _BUILTIN_FILTERS.get(code) or _PLUGIN_FILTERS.get(code) or f"filter {code}"


def _check_filters(node: Any, path: str, filters: list[tuple[int, tuple[int, ...]]]) -> bool:
    """Raise unless every filter of `node` can be decoded; return whether to import hdf5plugin.

    A filter libhdf5 lacks is looked for in hdf5plugin, then in HDF5_PLUGIN_PATH
    (libhdf5 loads those on the first read, so one element is read to find out).
    The processes that read the blocks import hdf5plugin too when it was used.
    """
    import h5py

    plugins = [code for code, _ in filters if code not in _BUILTIN_FILTERS]
    if not plugins:
        return False
    try:
        importlib.import_module(_PLUGIN_PACKAGE)
    except ImportError:
        imported = False
    else:
        imported = True
    missing = [code for code in plugins if not h5py.h5z.filter_avail(code)]
    if not missing:
        return imported
    try:
        node[(0,) * node.ndim] if node.size else None
    except OSError as err:
        names = ", ".join(f"{_filter_text(code, ())} (HDF5 filter id {code})" for code in missing)
        known = all(code in _PLUGIN_FILTERS for code in missing)
        fix = (
            f"install the {_PLUGIN_PACKAGE} package (pip install {_PLUGIN_PACKAGE}), which decodes it"
            if known
            else f"install an HDF5 plugin for it (the {_PLUGIN_PACKAGE} package has the common ones) "
            "or set HDF5_PLUGIN_PATH to its folder"
        )
        raise InputFormatError(
            f"{path}: dataset {node.name!r} is compressed with {names}, which this HDF5 cannot "
            f"decode ({err}); {fix}"
        ) from None
    return imported


def _axes_from_attributes(node: Any, ndim: int) -> str | None:
    """Return the axes a dataset's attributes name, or None when they name none (or not clearly).

    Read, in order: ``axes`` (``"zyx"`` or a list of names), the dimension labels
    of HDF5 dimension scales (``DIMENSION_LABELS``, h5py's ``dims[i].label``),
    ``dimension_labels``, and ilastik's ``axistags`` JSON.
    """
    candidates: list[Any] = [node.attrs.get("axes")]
    candidates.append([dim.label for dim in node.dims] if "DIMENSION_LABELS" in node.attrs else None)
    candidates.append(node.attrs.get("dimension_labels"))
    candidates.append(_axistags(node.attrs.get("axistags")))
    for names in candidates:
        letters = _letters(names, ndim)
        if letters is not None:
            return letters
    return None


def _axistags(value: Any) -> list[str] | None:
    """Return the axis keys of an ilastik/vigra ``axistags`` attribute (JSON), else None."""
    if value is None:
        return None
    try:
        tags = json.loads(value.decode() if isinstance(value, bytes) else str(value))
        return [tag["key"] for tag in tags["axes"]]
    except (ValueError, KeyError, TypeError):
        return None


def _letters(names: Any, ndim: int) -> str | None:
    """Return axis names (a string of letters, or a list of letters or words) as letters, else None.

    Examples
    --------
    >>> _letters("ZYX", 3), _letters(["time", "y", "x"], 3), _letters(["y", ""], 2)
    ('zyx', 'tyx', None)
    """
    if names is None:
        return None
    if isinstance(names, bytes):
        names = names.decode(errors="replace")
    items = list(names) if isinstance(names, str) else [_text(n) for n in np.atleast_1d(names)]
    letters = []
    for item in items:
        word = item.strip().lower()
        letter = _AXIS_WORDS.get(word, word if len(word) == 1 and word.isascii() and word.isalpha() else None)
        if letter is None:
            return None
        letters.append(letter)
    joined = "".join(letters)
    return joined if len(joined) == ndim == len(set(joined)) else None


def _text(value: Any) -> str:
    """Return an attribute item as text."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _scale_from_attributes(
    node: Any, axes: str
) -> tuple[tuple[float, ...] | None, tuple[str | None, ...] | None]:
    """Return pixel sizes and units from ``element_size_um`` (ilastik, Fiji's HDF5 plugin), else None.

    It gives one size per axis, or one per spatial axis (batch axes then get 1).
    """
    sizes = node.attrs.get("element_size_um")
    if sizes is None:
        return None, None
    try:
        values = [float(v) for v in np.atleast_1d(sizes)]
    except (TypeError, ValueError):
        return None, None
    spatial = [i for i, letter in enumerate(axes) if letter in "zyx"]
    if len(values) == len(axes):
        per_axis = values
    elif len(values) == len(spatial):
        per_axis = [1.0] * len(axes)
        for i, value in zip(spatial, values, strict=True):
            per_axis[i] = value
    else:
        return None, None
    units = tuple("micrometer" if letter in "zyx" else None for letter in axes)
    return tuple(per_axis), units
