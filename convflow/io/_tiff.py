"""TIFF, BigTIFF and OME-TIFF: lazy reading through tifffile's zarr store; tiled, streamed writing."""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import logging
import math
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import tifffile
import zarr

from convflow.errors import ArgumentError, InputFormatError
from convflow.io._image import InputImage, LazyFile, auto_chunks, default_axes, parse_chunks
from convflow.io._ome import ngff_unit
from convflow.io._zarr import check_level

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
# Output codecs: name -> tifffile compression. zstd and lzw need the imagecodecs package.
TIFF_CODECS = {
    "zlib": tifffile.COMPRESSION.ADOBE_DEFLATE,
    "deflate": tifffile.COMPRESSION.ADOBE_DEFLATE,
    "zstd": tifffile.COMPRESSION.ZSTD,
    "lzw": tifffile.COMPRESSION.LZW,
    "none": None,
}
# The levels each TIFF codec accepts (zlib's 0-9; zstd as for zarr; LZW and none take none).
TIFF_LEVELS = {"zlib": (0, 9), "deflate": (0, 9), "zstd": (-131072, 22)}
# Tile edge of a written TIFF when no output chunks are given; TIFF tiles are multiples of 16.
_TILE = 256
# A TIFF output is computed into a zarr array at this suffix beside it, then assembled from it
# (convflow/io/_write.py): a resume finds the blocks already stored there.
STAGING_SUFFIX = ".convflow-partial.zarr"
# OME-TIFF outputs keep convflow's record as JSON in a MapAnnotation of this namespace.
OME_NAMESPACE = "convflow"
_OME_ANNOTATION = "Annotation:convflow"
_OME_XMLNS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
# NGFF/UDUNITS length units (convflow's) -> OME-XML's unit symbols, and -> centimetres (TIFF resolution).
_OME_UNITS = {
    "angstrom": "Å",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
}
_CENTIMETERS = {
    "angstrom": 1e-8,
    "nanometer": 1e-7,
    "micrometer": 1e-4,
    "millimeter": 0.1,
    "centimeter": 1.0,
    "meter": 100.0,
}
# Python 3.14 decodes zstd itself; before that tifffile needs imagecodecs for it.
_CODEC_MODULE_NEEDED = {tifffile.COMPRESSION.ZSTD: ("imagecodecs", "compression.zstd")}


def open_tiff(path: str, dataset: str | None, chunks: object) -> InputImage:
    """Open the first image series of a TIFF lazily; `dataset` picks a pyramid level ("0": full size)."""
    try:
        with _tifffile_messages() as messages, tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_complete(path, tif, series, messages)
            level = _parse_level(path, dataset, len(series.levels))
            image = series.levels[level]
            shape, dtype = tuple(int(n) for n in image.shape), np.dtype(image.dtype)
            compression = tifffile.COMPRESSION(image.keyframe.compression)
            storage = tuple(zarr.open(tif.aszarr(level=level), mode="r").chunks)
            record = _record_of(tif.pages[0].description)
            axes = _axes_from(series.axes, series.kind, record)
            scale, units = _ome_scale(tif.ome_metadata, axes) if tif.is_ome else _recorded_scale(record, axes)
            kind = "ome-tiff" if tif.is_ome else "tiff"
    # tifffile raises RuntimeError too, for a page that does not fit the first (a damaged tag list).
    except (
        tifffile.TiffFileError,
        OSError,
        ValueError,
        IndexError,
        KeyError,
        RuntimeError,
        struct.error,
    ) as err:
        if isinstance(err, InputFormatError):
            raise
        raise InputFormatError(f"{path}: not a readable TIFF file ({err})") from err
    _check_decoder(path, compression)
    if dtype.kind not in "biuf":
        raise InputFormatError(f"{path}: holds {dtype} pixels; convflow reads integer or float images")
    working = parse_chunks(chunks, shape) or auto_chunks(shape, dtype.itemsize, storage)
    array = LazyFile(_TiffLevel, (path, level), shape, dtype).to_dask(path, working)
    return InputImage(
        array=array,
        axes=axes or default_axes(len(shape)),
        path=path,
        format=kind,
        dataset=None if dataset is None else str(level),
        scale=scale,
        units=units,
        storage_chunks=storage,
        codec=compression.name.lower(),
        provenance=record,
        axes_guessed=axes is None,
    )


@contextlib.contextmanager
def _tifffile_messages() -> Iterator[list[str]]:
    """Collect what tifffile logs (its warnings of damaged files) instead of printing it."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _check_complete(path: str, tif: tifffile.TiffFile, series: Any, messages: list[str]) -> None:
    """Refuse a TIFF that is truncated or has a damaged tag list, before tifffile shows one page of it.

    tifffile reads such a file as far as it can and only logs the damage: a
    (64, 64, 64) stack cut short reads as a (64, 64) image.
    """
    pages = len(tif.pages)  # reads every page's tags: a broken link between pages is logged here
    size = os.path.getsize(path)
    problem = None
    if messages:
        problem = messages[0].split("> ", 1)[-1]  # without tifffile's <TiffFile 'name'> prefix
    elif series.dataoffset is not None:
        # One contiguous block: ImageJ files over 4 GiB keep a single page for all their images.
        end = series.dataoffset + series.nbytes
        if end > size:
            problem = (
                f"its {tuple(series.shape)} image ends at byte {end}, past the end of the file ({size} bytes)"
            )
    elif series.size != sum(math.prod(page.shape) for page in series.pages if page is not None):
        problem = f"its metadata describes shape {tuple(series.shape)}, but its {pages} pages hold less"
    for page in () if problem else series.pages:
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True) if n]
        if ends and max(ends) > size:
            problem = f"page {page.index} ends at byte {max(ends)}, past the end of the file ({size} bytes)"
            break
    if problem is not None:
        raise InputFormatError(
            f"{path}: is a damaged or truncated TIFF ({problem}); convflow will not read part of it as "
            "the whole image: copy or export the file again"
        )


class _TiffLevel:
    """One level of a TIFF, read through tifffile's zarr store; closed with its LazyFile."""

    def __init__(self, path: str, level: int):
        self.store = tifffile.imread(path, aszarr=True, level=level)
        self.array = zarr.open(self.store, mode="r")

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.array[key]

    def close(self) -> None:
        """Close the TIFF file."""
        self.store.close()


def _parse_level(path: str, dataset: str | None, levels: int) -> int:
    """Return the pyramid level `dataset` names (default 0), or raise naming the levels there are."""
    if dataset is None:
        return 0
    if str(dataset).isdigit() and int(dataset) < levels:
        return int(dataset)
    raise InputFormatError(
        f"{path}: dataset={dataset!r} is not a level of this TIFF; it has levels "
        f"{', '.join(map(str, range(levels)))} (0 is full resolution)"
    )


def _axes_from(tiff_axes: str, kind: str, record: Any) -> str | None:
    """Return axes letters from the file (convflow record, OME, ImageJ, shaped), or None: a guess is due.

    tifffile says Q or I for an axis it knows nothing of. A series made only of
    those, y and x is a plain stack of pages, left to the default guess. One
    that names any other axis (S for samples such as RGB, C, T...) keeps every
    letter: Q and I then become batch axes, like S and C, never spatial ones.

    Examples
    --------
    >>> _axes_from("QSYX", "shaped", None), _axes_from("IYXS", "generic", None)
    ('qsyx', 'iyxs')
    >>> _axes_from("QYX", "shaped", None) is None, _axes_from("ZYX", "imagej", None)
    (True, 'zyx')
    """
    if isinstance(record, dict) and isinstance(record.get("output", {}).get("axes"), str):
        return record["output"]["axes"]
    letters = tiff_axes.lower()
    if len(set(letters)) != len(letters) or not letters.isalpha():
        return None
    if set(letters) - set("qiyx"):
        return letters
    if kind in ("ome", "imagej", "shaped") and not set(letters) & set("qi"):
        return letters
    return None


def _recorded_scale(
    record: Any, axes: str | None
) -> tuple[tuple[float, ...] | None, tuple[str | None, ...] | None]:
    """Return the pixel sizes and units a convflow TIFF's record keeps for its axes, else None."""
    output = record.get("output", {}) if isinstance(record, dict) else {}
    scale, units = output.get("scale"), output.get("units")
    if axes is None or not isinstance(scale, list) or len(scale) != len(axes):
        return None, None
    return tuple(float(v) for v in scale), (tuple(units) if isinstance(units, list) else None)


def _ome_scale(
    xml: str | None, axes: str | None
) -> tuple[tuple[float, ...] | None, tuple[str | None, ...] | None]:
    """Return the physical pixel size and units per axis from OME-XML's first Pixels element."""
    if not xml or axes is None:
        return None, None
    try:
        pixels = next(e for e in ET.fromstring(xml).iter() if e.tag.endswith("}Pixels"))
    except (ET.ParseError, StopIteration):
        return None, None
    scale, units = [], []
    for letter in axes:
        size = pixels.get(f"PhysicalSize{letter.upper()}") if letter in "xyz" else None
        scale.append(float(size) if size else 1.0)
        units.append(ngff_unit(pixels.get(f"PhysicalSize{letter.upper()}Unit", "µm")) if size else None)
    if all(u is None for u in units):
        return None, None
    return tuple(scale), tuple(units)


def _check_decoder(path: str, compression: tifffile.COMPRESSION) -> None:
    """Raise before any compute when this TIFF's compression cannot be decoded here."""
    needed = _CODEC_MODULE_NEEDED.get(compression)
    try:
        if compression != tifffile.COMPRESSION.NONE:
            tifffile.TIFF.DECOMPRESSORS[compression]
        if needed and not any(_has_module(m) for m in needed):
            raise KeyError(compression)
    except KeyError as err:
        raise InputFormatError(
            f"{path}: is compressed with {compression.name}, which needs the imagecodecs package; "
            "install it with `pip install imagecodecs`"
        ) from err


def _has_module(name: str) -> bool:
    """Return whether module `name` can be imported."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def parse_tiff_codec(codec: str, level: int | None) -> tuple[tifffile.COMPRESSION | None, dict[str, int]]:
    """Return tifffile's `compression` and `compressionargs` for a codec name, or raise if unavailable."""
    if codec not in TIFF_CODECS:
        raise ArgumentError(
            f"compression codec {codec!r} cannot be written to TIFF; use one of {', '.join(TIFF_CODECS)}"
        )
    check_level(codec, level, TIFF_LEVELS.get(codec))
    key = TIFF_CODECS[codec]
    if key is None:
        return None, {}
    try:
        tifffile.TIFF.COMPRESSORS[key](np.zeros(1, np.uint8))  # the fallbacks raise only when called
    except (KeyError, ImportError, NotImplementedError) as err:
        raise ArgumentError(
            f"compression codec {codec!r} for TIFF needs the imagecodecs package; install it with "
            "`pip install imagecodecs`, or use codec 'zlib'"
        ) from err
    return key, ({} if level is None else {"level": level})


def tiff_tile(shape: tuple[int, ...], chunks: tuple[int, ...] | None) -> tuple[int, int]:
    """Return the (height, width) of a TIFF tile: the output chunks' last two, or 256 x 256."""
    if chunks is None:
        return (_TILE, _TILE)
    tile = tuple(chunks[-2:])
    if any(t % 16 for t in tile):
        raise ArgumentError(
            f"chunks={list(chunks)}: a TIFF tile is {tile[0]} x {tile[1]}, but TIFF tiles must be "
            f"multiples of 16, e.g. chunks={[*chunks[:-2], 256, 256]}"
        )
    return tile  # type: ignore[return-value]


def write_tiff(
    array: da.Array,
    path: str,
    *,
    axes: str,
    tile: tuple[int, int],
    compression: tuple[tifffile.COMPRESSION | None, dict[str, int]],
    bigtiff: bool,
    record: dict[str, Any],
    compute_kwargs: dict[str, Any],
    scale: tuple[float, ...] | None = None,
    units: tuple[str | None, ...] | None = None,
) -> None:
    """Write `array` as a tiled TIFF, computing one band of blocks at a time.

    A plain TIFF's description holds ``{"shape", "axes", "convflow": record}``
    as JSON, and the pixel size of y and x (`scale`, in `units` of length) goes
    in its resolution tags. An OME-TIFF (``*.ome.tif``, ``*.ome.tiff``) holds
    OME-XML: the axes, the physical pixel sizes and units, and the record as
    JSON in a MapAnnotation (namespace `OME_NAMESPACE`).
    tifffile cannot write tiles out of order, so the blocks are computed band by
    band and memory holds one band: a block's planes (``chunks[-3]`` planes of
    Y x X) for 3-d and larger arrays, a block row (``chunks[0]`` rows of X, plus
    less than one tile row) for 2-d. Leading axes before the third-last are
    taken one index at a time: chunks longer than 1 there are computed again
    for every index.
    """
    codec, codec_args = compression
    options: dict[str, Any] = {}
    if is_ome_tiff_path(path):
        metadata: dict[str, Any] = {"axes": axes.upper(), "Name": os.path.basename(path)}
        for letter, size, unit in zip(axes, scale or (), units or (), strict=False):
            if letter in "zyx" and _OME_UNITS.get(unit or ""):
                metadata[f"PhysicalSize{letter.upper()}"] = size
                metadata[f"PhysicalSize{letter.upper()}Unit"] = _OME_UNITS[unit]  # type: ignore[index]
    else:
        metadata = {"axes": axes.upper(), "convflow": record}
        options = _resolution(axes, scale, units)
    tifffile.imwrite(
        path,
        _tiles(array, tile, compute_kwargs),
        shape=array.shape,
        dtype=array.dtype,
        tile=tile,
        photometric="minisblack",
        compression=codec,
        compressionargs=codec_args,
        bigtiff=bigtiff,
        metadata=metadata,
        ome=is_ome_tiff_path(path),
        **options,
    )
    if is_ome_tiff_path(path):
        update_tiff_record(path, record)


def _resolution(
    axes: str, scale: tuple[float, ...] | None, units: tuple[str | None, ...] | None
) -> dict[str, Any]:
    """Return tifffile's `resolution` and `resolutionunit` (pixels per cm) for y and x, when known.

    Examples
    --------
    >>> _resolution("yx", (0.5, 0.25), ("micrometer", "micrometer"))
    {'resolution': (40000.0, 20000.0), 'resolutionunit': 'CENTIMETER'}
    >>> _resolution("yx", None, None)
    {}
    """
    if scale is None or units is None or "y" not in axes or "x" not in axes:
        return {}
    y, x = axes.index("y"), axes.index("x")
    if units[y] not in _CENTIMETERS or units[x] not in _CENTIMETERS:
        return {}
    per_cm = [1 / (scale[i] * _CENTIMETERS[units[i]]) for i in (x, y)]  # type: ignore[index]
    return {"resolution": tuple(per_cm), "resolutionunit": "CENTIMETER"}


def update_tiff_record(path: str, record: dict[str, Any]) -> None:
    """Replace the `convflow` record of a TIFF that convflow wrote (JSON, or OME-XML's MapAnnotation)."""
    with tifffile.TiffFile(path) as tif:
        description = tif.pages[0].description
    if _is_ome_xml(description):
        tifffile.tiffcomment(path, _with_ome_record(description, record).encode())
        return
    described = json.loads(description)
    described["convflow"] = record
    tifffile.tiffcomment(path, json.dumps(described).encode())


def read_tiff_record(path: str) -> dict[str, Any] | None:
    """Return the `convflow` record of a TIFF, or None; reads the first page's tags only."""
    try:
        with tifffile.TiffFile(path) as tif:
            if not len(tif.pages):  # a header without pages: an assembly cut short after its first bytes
                return None
            description = tif.pages[0].description
    except struct.error as err:  # a file too short for a TIFF header; tifffile lets it through
        raise ValueError(f"{path}: not a TIFF file ({err})") from err
    return _record_of(description)


def _record_of(description: str) -> dict[str, Any] | None:
    """Return the `convflow` record in a first page's description (JSON, or OME-XML), else None."""
    try:
        record = (
            _ome_record(description) if _is_ome_xml(description) else json.loads(description).get("convflow")
        )
    except (ValueError, AttributeError, ET.ParseError):
        return None
    return record if isinstance(record, dict) else None


def _is_ome_xml(description: str) -> bool:
    """Return whether a description is OME-XML."""
    return description.lstrip().startswith("<?xml") and "<OME" in description[:1000]


def _ome_record(xml: str) -> Any:
    """Return the JSON in OME-XML's convflow MapAnnotation, or None."""
    for element in ET.fromstring(xml).iter(f"{{{_OME_XMLNS}}}MapAnnotation"):
        if element.get("Namespace") == OME_NAMESPACE:
            for entry in element.iter(f"{{{_OME_XMLNS}}}M"):
                if entry.get("K") == "convflow":
                    return json.loads(entry.text or "null")
    return None


def _with_ome_record(xml: str, record: dict[str, Any]) -> str:
    """Return OME-XML with `record` (JSON) as the first image's convflow MapAnnotation, replacing any.

    OME's schema puts StructuredAnnotations after the images, and an image's
    AnnotationRef after its Pixels.
    """
    ET.register_namespace("", _OME_XMLNS)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    root = ET.fromstring(xml)
    ns = f"{{{_OME_XMLNS}}}"
    annotations = root.find(f"{ns}StructuredAnnotations")
    if annotations is None:
        annotations = ET.Element(f"{ns}StructuredAnnotations")
        rois = [i for i, child in enumerate(root) if child.tag == f"{ns}ROI"]
        root.insert(rois[0] if rois else len(root), annotations)
    for old in list(annotations):
        if old.get("Namespace") == OME_NAMESPACE:
            annotations.remove(old)
    annotation = ET.SubElement(annotations, f"{ns}MapAnnotation", ID=_OME_ANNOTATION, Namespace=OME_NAMESPACE)
    ET.SubElement(ET.SubElement(annotation, f"{ns}Value"), f"{ns}M", K="convflow").text = json.dumps(record)
    image = root.find(f"{ns}Image")
    if image is not None and not any(
        r.get("ID") == _OME_ANNOTATION for r in image.iter(f"{ns}AnnotationRef")
    ):
        ET.SubElement(image, f"{ns}AnnotationRef", ID=_OME_ANNOTATION)
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")


def is_ome_tiff_path(path: str) -> bool:
    """Return whether `path` names an OME-TIFF by its name.

    Examples
    --------
    >>> is_ome_tiff_path("a/b.OME.tif"), is_ome_tiff_path("b.ome.tiff"), is_ome_tiff_path("b.tif")
    (True, True, False)
    """
    return path.lower().endswith((".ome.tif", ".ome.tiff"))


def check_ome_tiff_axes(axes: str) -> None:
    """Raise unless `axes` can be written as OME-TIFF: an order of some of t, c, z, y, x, ending yx.

    Examples
    --------
    >>> check_ome_tiff_axes("tzyx")
    >>> check_ome_tiff_axes("byx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.ArgumentError: axes='byx' cannot be written as OME-TIFF: ...
    """
    if not axes.endswith("yx") or not set(axes) <= set("tczyx"):
        raise ArgumentError(
            f"axes={axes!r} cannot be written as OME-TIFF: OME names only t, c, z, y and x, with y and x "
            "last; write a plain .tif instead, or give the axes as some of tczyx"
        )


def _tiles(array: da.Array, tile: tuple[int, int], compute_kwargs: dict[str, Any]) -> Iterator[np.ndarray]:
    """Yield the tiles of every page in file order, computing one band of blocks at a time."""
    ty, tx = tile
    for band in _bands(array, ty, compute_kwargs):
        for page in band.reshape(-1, *band.shape[-2:]):
            for y in range(0, page.shape[0], ty):
                for x in range(0, page.shape[1], tx):
                    yield page[y : y + ty, x : x + tx]


def _bands(array: da.Array, ty: int, compute_kwargs: dict[str, Any]) -> Iterator[np.ndarray]:
    """Yield computed bands in file order: runs of whole pages (n-d) or of whole tile rows (2-d)."""
    if array.ndim == 2:
        # One block row at a time; rows past the last whole tile row wait for the next block row.
        held = np.empty((0, array.shape[1]), array.dtype)
        for start, stop in _bounds(array.chunks[0]):
            held = np.concatenate([held, dask.compute(array[start:stop], **compute_kwargs)[0]])
            whole = held.shape[0] if stop == array.shape[0] else held.shape[0] // ty * ty
            if whole:
                band, held = held[:whole], held[whole:]
                yield band
        return
    # Pages run in C order over the leading axes: all but the last of them go one index at a time.
    lead = array.ndim - 2
    stacked = array.rechunk(dict.fromkeys(range(lead - 1), 1))
    for index in np.ndindex(*stacked.numblocks[: lead - 1]):
        for start, stop in _bounds(stacked.chunks[lead - 1]):
            yield dask.compute(stacked[(*index, slice(start, stop))], **compute_kwargs)[0]


def _bounds(chunks: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    """Yield the (start, stop) of each chunk along one axis."""
    offsets = np.cumsum((0, *chunks)).tolist()
    yield from itertools.pairwise(offsets)


def staging_path(path: str) -> str:
    """Return where the blocks of the TIFF output `path` are stored before the file is assembled.

    Examples
    --------
    >>> staging_path("out/smooth.tif")
    'out/smooth.tif.convflow-partial.zarr'
    """
    return path + STAGING_SUFFIX


def is_tiff_path(path: str) -> bool:
    """Return whether `path` names a TIFF file by its extension."""
    return os.path.splitext(path)[1].lower() in TIFF_SUFFIXES
