"""OME-Zarr (OME-NGFF 0.4 and 0.5): multiscales metadata, levels, and 2x pyramids."""

from __future__ import annotations

import difflib
import functools
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.array.chunk import coarsen
from dask.array.routines import aligned_coarsen_chunks
from dask.base import tokenize

from convflow.engine import SPATIAL, BlockArray, cast_result, describe_stack, filter_blocks, make_filter
from convflow.engine._blocks import Map, Regrid, Strided
from convflow.errors import ArgumentError, InputFormatError
from convflow.io._chunks import read_array
from convflow.io._image import InputImage, default_axes, parse_chunks
from convflow.io._zarr import describe_codecs, working_chunks

# The NGFF versions convflow writes: 0.4 in zarr v2 is what most viewers read today.
NGFF_VERSIONS = {"ome-zarr": "0.4", "ome-zarr-v0.5": "0.5"}
# How a pyramid level is made from the one before: a mean over each 2x block, or a Gaussian blur
# (sigma 2 * factor / 6, as skimage.transform.pyramid_gaussian and ome-zarr-py's scaler) then every
# second pixel.
PYRAMID_METHODS = ("mean", "gaussian")
_AXIS_TYPES = {"x": "space", "y": "space", "z": "space", "t": "time", "c": "channel"}
# NGFF names units after UDUNITS-2; files and people often write the abbreviation.
_UNITS = {
    "µm": "micrometer",
    "μm": "micrometer",
    "um": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "å": "angstrom",
    "pm": "picometer",
    "s": "second",
    "ms": "millisecond",
    "µs": "microsecond",
    "us": "microsecond",
    "min": "minute",
    "h": "hour",
}


def ngff_unit(unit: str | None) -> str | None:
    """Return the NGFF (UDUNITS-2) name of a unit, e.g. ``µm`` -> ``micrometer``.

    Examples
    --------
    >>> ngff_unit("µm"), ngff_unit("second")
    ('micrometer', 'second')
    """
    return None if unit is None else _UNITS.get(unit.lower(), unit)


def multiscales_of(attrs: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Return the NGFF multiscales list of a group's attributes (0.4 or 0.5 layout), or None."""
    found = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    found = found or attrs.get("multiscales")
    return found if isinstance(found, list) and found else None


def summary(node: zarr.Group | zarr.Array, dataset: str | None = None) -> dict[str, str]:
    """Return what ``convflow inspect`` adds for an OME-Zarr image: its NGFF version and its levels.

    `node` is the image group, or a plain group holding it as `dataset`.
    """
    image = node
    if not isinstance(image, zarr.Group) or multiscales_of(image.attrs.asdict()) is None:
        try:
            image = node[dataset.strip("/")] if dataset and isinstance(node, zarr.Group) else None
        except KeyError:
            image = None
    attrs = image.attrs.asdict() if isinstance(image, zarr.Group) else {}
    multiscales = multiscales_of(attrs)
    if not multiscales:
        return {}
    ome = attrs.get("ome")
    version = ome.get("version") if isinstance(ome, dict) else multiscales[0].get("version")
    levels = []
    for entry in multiscales[0].get("datasets", []):
        level = entry.get("path")
        try:
            levels.append(f"{level} {tuple(image[level].shape)}")
        except KeyError:
            levels.append(f"{level} (missing)")
    return {"ngff": str(version or "unknown"), "levels": ", ".join(levels)}


def open_ome(group: zarr.Group, path: str, dataset: str | None, chunks: object) -> InputImage:
    """Open one resolution level of an OME-Zarr image group lazily, with its axes and scale."""
    multiscale = multiscales_of(group.attrs.asdict())[0]  # type: ignore[index]
    levels = [d["path"] for d in multiscale.get("datasets", [])]
    level = levels[0] if dataset is None and levels else dataset
    if level not in levels:
        close = difflib.get_close_matches(str(level), levels, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InputFormatError(
            f"{path}: OME-Zarr has no resolution level {level!r}.{hint} Levels: {', '.join(levels) or 'none'}"
        )
    try:
        node = group[level]
    except KeyError:
        raise InputFormatError(
            f"{path}: OME-Zarr metadata names level {level!r}, but it is missing"
        ) from None
    storage = tuple(node.shards or node.chunks)
    # NGFF 0.2 and older have no axes: they are always a suffix of tczyx.
    axes_meta = multiscale.get("axes") or list("tczyx"[-node.ndim :])
    axes = _letters(axes_meta, node.ndim)
    scale, translation = _transforms(multiscale, levels.index(level), node.ndim)
    units = tuple(ngff_unit(a.get("unit")) if isinstance(a, dict) else None for a in axes_meta)
    return InputImage(
        array=read_array(node, parse_chunks(chunks, node.shape) or working_chunks(node, storage)),
        axes=axes,
        path=path,
        format="ome-zarr",
        dataset=level,
        scale=scale,
        translation=translation,
        units=units if any(units) else None,
        storage_chunks=storage,
        codec=describe_codecs(node),
        provenance=group.attrs.get("convflow"),
    )


def _letters(axes_meta: list[Any], ndim: int) -> str:
    """Return one letter per NGFF axis: its name when it is one letter, else from its type."""
    names = [(a.get("name", "") if isinstance(a, dict) else str(a)).lower() for a in axes_meta]
    if len(names) == ndim and all(len(n) == 1 for n in names) and len(set(names)) == ndim:
        return "".join(names)
    types = [a.get("type") if isinstance(a, dict) else None for a in axes_meta]
    spatial = SPATIAL[-types.count("space") :] if "space" in types else ""
    letters = []
    for kind in types:
        if kind == "space":
            letters.append(spatial[0])
            spatial = spatial[1:]
        else:
            letters.append({"time": "t", "channel": "c"}.get(kind or "", "b"))
    joined = "".join(letters)
    return joined if len(set(joined)) == ndim == len(joined) else default_axes(ndim)


def _transforms(
    multiscale: dict[str, Any], index: int, ndim: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the (scale, translation) of one level: its own transforms, then the multiscale's."""
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for transforms in (
        multiscale["datasets"][index].get("coordinateTransformations", []),
        multiscale.get("coordinateTransformations", []),
    ):
        for t in transforms:
            if t.get("type") == "scale" and "scale" in t:
                scale, translation = scale * t["scale"], translation * t["scale"]
            elif t.get("type") == "translation" and "translation" in t:
                translation = translation + t["translation"]
    return tuple(scale.tolist()), tuple(translation.tolist())


def check_ome_axes(axes: str) -> None:
    """Raise unless `axes` fits NGFF: 2-3 of z, y, x last; before them at most t, then one other.

    Examples
    --------
    >>> check_ome_axes("tczyx")
    >>> check_ome_axes("zyxc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.ArgumentError: axes='zyxc' cannot be written as OME-Zarr: ...
    """
    lead = axes.rstrip(SPATIAL)
    spatial = axes[len(lead) :]
    lead_ok = len(lead) < 2 or (len(lead) == 2 and lead[0] == "t" and lead[1] != "t")
    if not (2 <= len(spatial) <= 3 and lead_ok and not set(lead) & set(SPATIAL)):
        raise ArgumentError(
            f"axes={axes!r} cannot be written as OME-Zarr: NGFF needs 2 or 3 spatial axes (z, y, x) last, "
            "after at most a time axis 't' and one other axis (e.g. 'c'), as in 'tczyx'; write "
            "format='zarr' instead, or reorder the axes"
        )


def level_shapes(
    shape: tuple[int, ...], axes: str, levels: int
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Return (shape, factor per axis) of each pyramid level; spatial axes halve while longer than 1.

    Examples
    --------
    >>> level_shapes((3, 9, 8), "cyx", 3)
    [((3, 9, 8), (1, 1, 1)), ((3, 4, 4), (1, 2, 2)), ((3, 2, 2), (1, 2, 2))]
    """
    result = [(tuple(shape), (1,) * len(shape))]
    for _ in range(levels - 1):
        previous = result[-1][0]
        factors = tuple(2 if a in SPATIAL and n > 1 else 1 for a, n in zip(axes, previous, strict=True))
        result.append((tuple(n // f for n, f in zip(previous, factors, strict=True)), factors))
    return result


def multiscales_attrs(
    *,
    axes: str,
    units: tuple[str | None, ...] | None,
    scale: tuple[float, ...] | None,
    translation: tuple[float, ...] | None,
    factors: list[tuple[int, ...]],
    version: str,
    name: str,
    method: str = "mean",
) -> dict[str, Any]:
    """Return the group attributes of an NGFF image with one dataset per level, named "0", "1", ...

    A level made by `method` ``mean`` sits at the centre of the pixels it
    averages; one made by ``gaussian`` at the pixel it keeps.
    """
    base_scale = np.asarray(scale if scale is not None else (1.0,) * len(axes), dtype=float)
    base_shift = np.asarray(translation if translation is not None else (0.0,) * len(axes), dtype=float)
    axes_meta = []
    for i, letter in enumerate(axes):
        entry: dict[str, Any] = {"name": letter}
        if letter in _AXIS_TYPES:
            entry["type"] = _AXIS_TYPES[letter]
        if units is not None and units[i]:
            entry["unit"] = ngff_unit(units[i])
        axes_meta.append(entry)
    datasets, step = [], np.ones(len(axes))
    for level, factor in enumerate(factors):
        step = step * factor
        # A mean over `step` pixels sits at the centre of those pixels; a subsample at its first.
        shift = base_shift + (step - 1) / 2 * base_scale if method == "mean" else base_shift
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": (base_scale * step).tolist()}]
        if shift.any():
            transforms.append({"type": "translation", "translation": shift.tolist()})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    multiscale = {"name": name, "axes": axes_meta, "datasets": datasets, "type": method}
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscale}]}
    return {"ome": {"version": version, "multiscales": [multiscale]}}


def downsample(
    level: BlockArray, factors: tuple[int, ...], dtype: np.dtype, method: str, chunks: tuple[int, ...]
) -> BlockArray:
    """Return `level` made smaller by `factors` with `method` (excess trimmed), cast like any result.

    ``mean`` averages each block of `factors` pixels; ``gaussian`` blurs every
    downsampled axis with sigma ``2 * factor / 6`` (truncated at 4 sigma,
    scipy's ``reflect`` edges) then keeps every `factor`-th pixel, from the
    first.  The result is a block array whose tasks are made for the blocks a
    wave asks for, never for the whole level.  A ``mean`` block is
    ``dask.array.coarsen``'s of the same pieces of `level`, so its values are
    those, bit for bit; a ``gaussian`` level comes in blocks of `chunks`.

    Examples
    --------
    >>> from convflow.engine import from_dask, to_dask
    >>> x = from_dask(da.from_array(np.arange(16.0).reshape(4, 4), chunks=2))
    >>> to_dask(downsample(x, (2, 2), np.dtype(np.float64), "mean", (2, 2))).compute()
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    >>> downsample(x, (1, 2), np.dtype(np.float64), "gaussian", (2, 2)).shape
    (4, 2)
    """
    if method == "mean":
        aligned = tuple(aligned_coarsen_chunks(c, f) for c, f in zip(level.chunks, factors, strict=True))
        source = level if aligned == level.chunks else Regrid(level, aligned)
        # As dask's coarsen: a block of each aligned piece; the excess at the end makes none.
        coarse = tuple(
            tuple(n // f for n in axis if n // f) for axis, f in zip(aligned, factors, strict=True)
        )
        function = functools.partial(_mean_block, factors=factors, dtype=dtype)
        return Map(
            function, [source], dtype, name=f"mean-{tokenize(source.name, factors, dtype.str)}", chunks=coarse
        )
    # One blur along each downsampled axis, run as one stack: a single halo exchange for all of them.
    blurs = [
        make_filter(
            level.dtype,
            level.ndim,
            gaussian_weights(2 * factor / 6),
            flip=False,
            mode="reflect",
            cval=0.0,
            origin=0,
            axes=(axis,),
            method="auto",
            dtype=None,
        )
        for axis, factor in enumerate(factors)
        if factor > 1
    ]
    smaller = filter_blocks(level, describe_stack(blurs, level.chunks)) if blurs else level
    shape = tuple(n // f for n, f in zip(level.shape, factors, strict=True))
    kept = Strided(smaller, factors, da.core.normalize_chunks(chunks, shape))
    function = functools.partial(cast_result, dtype=dtype)
    return Map(function, [kept], dtype, name=f"cast-{tokenize(kept.name, dtype.str)}")


def _mean_block(block: np.ndarray, factors: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One block of a mean level: dask's coarsen of `block`, cast to `dtype`."""
    return cast_result(coarsen(np.mean, block, dict(enumerate(factors)), trim_excess=True), dtype)


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Return the 1-D Gaussian scipy.ndimage.gaussian_filter1d uses: radius ``int(truncate * sigma + 0.5)``.

    Examples
    --------
    >>> gaussian_weights(2 / 3).round(4)
    array([0.    , 0.0066, 0.1942, 0.5982, 0.1942, 0.0066, 0.    ])
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()
