"""Previews: middle slices of an input, of each stage and of each output, side by side.

A preview shows central windows of the planes through the middle of an image
(``zy``, ``zx`` and ``yx`` of a volume, the image itself in 2-D), for the
first few items of a batch.  Only the chunks under those windows are read:
each window is sliced from the lazy dask array before anything is computed,
so a preview of a terabyte volume reads a few chunks.

A config's preview shows the input beside every output once a run has
written them all, and before that beside every stage computed on a small
central crop.  The stages are built on the whole volume, as a run builds
them, and the crop is sliced from them before computing: dask then computes
only the blocks under the crop (and the halos they borrow), and the crop is
exactly what a full run writes there.  `convflow.preview._figure` draws the
panels.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dask
import dask.array as da
import numpy as np

from convflow.config import Config, load_config, path_name
from convflow.engine import SPATIAL
from convflow.errors import ArgumentError, ConvflowError
from convflow.io import InputImage, check_output, open_input, parse_axis_letters
from convflow.pipeline import OutputTarget, Plan, make_plan
from convflow.preview._figure import Panel, render

__all__ = [
    "CROP",
    "ITEMS",
    "MAX_SIDE",
    "SHOW",
    "Panel",
    "Preview",
    "image_preview",
    "plan_preview",
    "preview_config",
    "preview_path",
    "render",
]

# Longest side of a window cut from a middle slice of a file: a few chunks of a typical store.
MAX_SIDE = 512
# Longest side of the central crop a config's stages are computed on before a run.
CROP = 128
# Batch items (time points, channels, files) shown, from the first.
ITEMS = 3
# What a config's preview shows beside the input.
SHOW = ("auto", "crop", "outputs")


@dataclass(frozen=True)
class Preview:
    """Panels ready to draw: `rows` of `Panel`, a figure `title`, and what is `shown`.

    `shown` is ``'image'`` for a file, ``'crop'`` for a config's stages on a
    central crop, or ``'outputs'`` for a config's written outputs.
    """

    rows: list[list[Panel]]
    title: str
    shown: str


class _View(NamedTuple):
    """One window to cut: a label, the letters of the axes it keeps, and the index."""

    label: str
    axes: str
    where: tuple[int | slice, ...]


def preview_path(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    dataset: str | None = None,
    axes: str | None = None,
    max_side: int = MAX_SIDE,
    items: int = ITEMS,
) -> Path:
    """Draw the middle slices of an image file to a PNG, reading only the chunks shown.

    Parameters
    ----------
    path : str or path-like
        Anything `convflow.io.open_input` reads: zarr, OME-Zarr, TIFF,
        ``.npy``, or a glob.
    out : str or path-like
        The picture to write, replaced if it exists; its folder is made if
        missing.  The suffix picks the format (``.png``, ``.svg``, ``.pdf``...).
    dataset, axes : str, optional
        As for `convflow.io.open_input`.
    max_side : int, default 512
        Longest side of each window, cut from the centre of each middle slice.
    items : int, default 3
        Batch items shown (one row each), from the first.

    Returns
    -------
    pathlib.Path
        `out`.

    Raises
    ------
    convflow.errors.InputNotFoundError, convflow.errors.InputFormatError
        As for `convflow.io.open_input`.
    convflow.errors.ArgumentError
        `max_side` or `items` is not a positive integer, or `out` has a suffix
        matplotlib cannot write.

    See Also
    --------
    image_preview : the panels, without drawing them.
    preview_config : a pipeline's input beside its stages or outputs.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "image.npy"), np.arange(64.0).reshape(8, 8))
    >>> preview_path(os.path.join(folder, "image.npy"), os.path.join(folder, "image.png")).name
    'image.png'
    """
    image = open_input(path, dataset=dataset, axes=axes)
    preview = image_preview(image, max_side=max_side, items=items)
    return render(preview.rows, out, title=preview.title)


def preview_config(
    config: str | os.PathLike[str] | Config | Plan,
    out: str | os.PathLike[str],
    *,
    show: str = "auto",
    crop: int = CROP,
    max_side: int = MAX_SIDE,
    items: int = ITEMS,
) -> Path:
    """Draw a pipeline's input beside its outputs, or beside each stage on a central crop.

    Parameters
    ----------
    config : str, path-like, Config or Plan
        A config file, one loaded by `convflow.config._load.load_config`, or the
        `convflow.pipeline._plan.make_plan` of one (as ``convflow run --preview`` has).
    out : str or path-like
        The picture to write, replaced if it exists.
    show : {'auto', 'crop', 'outputs'}, default 'auto'
        ``outputs``: the written outputs, read from disk; ``crop``: every stage
        computed on a central crop; ``auto``: the outputs when every one of
        them is written and complete, else the crop.
    crop : int, default 128
        Longest side of each window of the crop.  It is also kept within two
        chunks of the input, so that only a few chunks are computed.
    max_side : int, default 512
        Longest side of each window of the outputs.
    items : int, default 3
        Batch items shown, from the first.

    Returns
    -------
    pathlib.Path
        `out`.

    Raises
    ------
    convflow.errors.ConvflowError
        Whatever `load_config` and `make_plan` find wrong with the config.
    convflow.errors.ArgumentError
        A bad `show`, `crop`, `max_side` or `items`; ``show='outputs'`` with
        an output that is missing or incomplete.

    See Also
    --------
    plan_preview : the panels, without drawing them.
    """
    if isinstance(config, Plan):
        plan = config
    else:
        plan = make_plan(config if isinstance(config, Config) else load_config(config), strict=False)
    preview = plan_preview(plan, show=show, crop=crop, max_side=max_side, items=items)
    return render(preview.rows, out, title=preview.title)


def image_preview(
    image: InputImage | Any,
    *,
    axes: str | None = None,
    name: str | None = None,
    max_side: int = MAX_SIDE,
    items: int = ITEMS,
) -> Preview:
    """Return the panels of an image's middle slices: one row per batch item, one panel per plane.

    Parameters
    ----------
    image : InputImage, dask array, zarr array or array-like
        A zarr (or other chunked) array is read lazily with its own chunks.
    axes : str, optional
        One letter per axis; default: the image's own, else the spec's default.
    name : str, optional
        The name in each panel's title; default: the file's name, or ``image``.
    max_side : int, default 512
        Longest side of each window.
    items : int, default 3
        Batch items shown, from the first.

    Returns
    -------
    Preview

    Examples
    --------
    >>> import numpy as np
    >>> preview = image_preview(np.zeros((4, 30, 40, 50)), max_side=32, items=2)
    >>> [[panel.values.shape for panel in row] for row in preview.rows]
    [[(32, 32), (30, 32), (30, 32)], [(32, 32), (30, 32), (30, 32)]]
    >>> preview.rows[1][0].title
    'image\\nt=1  yx @ z=15'
    """
    array, letters, label = _lazy_image(image, axes, name)
    side, count = _positive("max_side", max_side), _positive("items", items)
    views = _views(array.shape, letters, [min(side, n) for n in array.shape], count)
    panels = _cut({label: array}, views)[label]
    title = (
        f"{label}: shape {tuple(array.shape)}, {array.dtype}, axes {letters}; "
        f"central windows (at most {side} a side) of the middle slices"
    )
    return Preview(rows=panels, title=title, shown="image")


def plan_preview(
    plan: Plan, *, show: str = "auto", crop: int = CROP, max_side: int = MAX_SIDE, items: int = ITEMS
) -> Preview:
    """Return the input's panels beside each output's, or beside each stage's on a central crop.

    One column per array (the input first), one row per plane of each batch
    item.  Every column is cut with the same windows, so panels side by side
    show the same pixels.

    Parameters
    ----------
    plan : Plan
        From `convflow.pipeline._plan.make_plan`; nothing of it has been computed.
    show, crop, max_side, items
        As for `preview_config`.

    Returns
    -------
    Preview
        `shown` is ``'crop'`` or ``'outputs'``; each panel's `where` indexes
        the whole array it was cut from.
    """
    if show not in SHOW:
        raise ArgumentError(f"show={show!r} is not one of {', '.join(map(repr, SHOW))}")
    count = _positive("items", items)
    crop_side, out_side = _positive("crop", crop), _positive("max_side", max_side)
    image = plan.image
    written = _written_outputs(plan, strict=show == "outputs") if show != "crop" else None
    name = _config_name(plan)
    columns: dict[str, da.Array] = {f"input {os.path.basename(image.path)}": image.array}
    if written is not None:
        columns |= written
        lengths = [min(out_side, n) for n in image.shape]
        title = f"{name}: the input and the outputs as written; central windows of the middle slices"
    else:
        columns |= {stage.name: plan.arrays[stage.name] for stage in plan.config.stages}
        lengths = [
            min(crop_side, n, 2 * _chunk_at(c, n // 2))
            for n, c in zip(image.shape, image.chunks, strict=True)
        ]
        spatial = image.spatial_axes
        if all(lengths[a] == image.shape[a] for a in spatial):
            title = f"{name}: every stage, computed on the whole image {tuple(image.shape)}"
        else:
            window = " x ".join(str(lengths[a]) for a in spatial)
            title = (
                f"{name}: every stage, computed on a central crop ({window}) of {tuple(image.shape)}; "
                "the same values a full run writes there"
            )
    cut = _cut(columns, _views(image.shape, image.axes, lengths, count))
    rows = [list(panels) for panels in zip(*(itertools.chain(*cut[c]) for c in columns), strict=True)]
    return Preview(rows=rows, title=title, shown="outputs" if written is not None else "crop")


def _lazy_image(image: Any, axes: str | None, name: str | None) -> tuple[da.Array, str, str]:
    """Return `image` as a lazy dask array, its axes letters and its name."""
    if isinstance(image, InputImage):
        letters = image.axes if axes is None else parse_axis_letters(axes, image.shape)
        return image.array, letters, name or os.path.basename(image.path.rstrip("/")) or image.path
    if isinstance(image, da.Array):
        array = image
    elif hasattr(image, "chunks") and hasattr(image, "__getitem__"):
        array = da.from_array(image, chunks=image.chunks)  # zarr, h5py: read chunk by chunk
    else:
        array = da.from_array(np.asarray(image), chunks=-1)
    return array, parse_axis_letters(axes, array.shape), name or "image"


def _positive(what: str, value: object) -> int:
    """Return `value` as an int, or raise unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ArgumentError(f"{what}={value!r} must be a positive integer, e.g. {what}=256")
    return int(value)


def _chunk_at(chunks: Sequence[int], position: int) -> int:
    """Return the length of the chunk that holds `position`.

    Examples
    --------
    >>> _chunk_at((100, 100, 50), 150), _chunk_at((100, 100, 50), 220)
    (100, 50)
    """
    end = 0
    for length in chunks:
        end += length
        if position < end:
            return length
    return chunks[-1]


def _views(shape: Sequence[int], axes: str, lengths: Sequence[int], items: int) -> list[list[_View]]:
    """Return one row per batch item (the first `items`), one view per plane through the middle.

    A volume has three planes, each through the middle of the axis it leaves
    out, in the order ``yx``, ``zx``, ``zy``; an image one, a signal one line.
    Each view keeps the central `lengths[axis]` of every axis it shows.

    Examples
    --------
    >>> _views((10, 20), "yx", (4, 6), 3)
    [[_View(label='yx', axes='yx', where=(slice(3, 7, None), slice(7, 13, None)))]]
    >>> [v.label for v in _views((2, 5, 6, 7), "czyx", (2, 5, 6, 7), 1)[0]]
    ['c=0  yx @ z=2', 'c=0  zx @ y=3', 'c=0  zy @ x=3']
    """
    if 0 in shape:
        raise ArgumentError(f"an image of shape {tuple(shape)} is empty: there is nothing to show")
    spatial = [a for a, letter in enumerate(axes) if letter in SPATIAL]
    if not spatial:
        raise ArgumentError(f"axes={axes!r} has no spatial axis (x, y or z) to show; give axes with some")
    batch = [a for a in range(len(shape)) if a not in spatial]
    middle = {a: shape[a] // 2 for a in spatial}
    window = {
        a: slice((shape[a] - lengths[a]) // 2, (shape[a] - lengths[a]) // 2 + lengths[a]) for a in spatial
    }
    fixed_axes: list[int | None] = [None] if len(spatial) < 3 else list(spatial)
    rows = []
    for item in itertools.islice(np.ndindex(*(shape[a] for a in batch)), items):
        where_item = dict(zip(batch, (int(k) for k in item), strict=True))
        prefix = "  ".join(f"{axes[a]}={k}" for a, k in where_item.items())
        row = []
        for fixed in fixed_axes:
            shown = "".join(axes[a] for a in spatial if a != fixed)
            where = {**where_item, **{a: middle[a] if a == fixed else window[a] for a in spatial}}
            plane = shown if fixed is None else f"{shown} @ {axes[fixed]}={middle[fixed]}"
            label = f"{prefix}  {plane}" if prefix else plane
            row.append(_View(label, shown, tuple(where[a] for a in range(len(shape)))))
        rows.append(row)
    return rows


def _cut(columns: Mapping[str, da.Array], views: list[list[_View]]) -> dict[str, list[list[Panel]]]:
    """Slice every view from every lazy column, then compute them all in one pass.

    Slicing first is what keeps the reads small: dask culls every block that
    no window touches.  One `dask.compute` lets columns share the blocks of
    the stages they come from.
    """
    lazy = [array[view.where] for array in columns.values() for row in views for view in row]
    values = iter(dask.compute(*lazy))
    return {
        name: [
            [Panel(f"{name}\n{view.label}", next(values), view.axes, view.where) for view in row]
            for row in views
        ]
        for name in columns
    }


def _config_name(plan: Plan) -> str:
    """The config file's name, or ``config`` for one built in memory."""
    source = plan.config.source
    return "config" if source is None else source.path.name


def _written_outputs(plan: Plan, *, strict: bool) -> dict[str, da.Array] | None:
    """Return each output read lazily from disk, shaped like its stage, or None unless all are complete.

    An output with ``{stem}`` is one file per input file: they are stacked
    back along the batch axis.  With `strict`, a missing or incomplete output
    raises instead of giving None.
    """
    grouped: dict[int, list[OutputTarget]] = {}
    for target in plan.outputs:
        grouped.setdefault(target.index, []).append(target)
    columns = {}
    for index, targets in grouped.items():
        arrays = []
        for target in targets:
            problem = _unwritten(target)
            if problem is not None:
                if strict:
                    raise ArgumentError(
                        f"show='outputs': {target.path} {problem}; run the config first, or show the "
                        "stages on a crop with show='crop'"
                    )
                return None
            arrays.append(
                open_input(target.path, storage_options=target.options.get("storage_options")).array
            )
        spec = plan.config.outputs[index]
        array = da.stack(arrays) if "{stem}" in str(spec.path) else arrays[0]
        stage = plan.arrays[spec.stage]
        if array.shape != stage.shape:
            if strict:
                raise ArgumentError(
                    f"show='outputs': {spec.path} has shape {array.shape} but stage {spec.stage!r} makes "
                    f"{stage.shape}; it was written by another config: run this one with --overwrite"
                )
            return None
        label = f"{spec.stage} -> {path_name(spec.path)}"
        columns[label if label not in columns else f"{label} (outputs[{index}])"] = array
    return columns


def _unwritten(target: OutputTarget) -> str | None:
    """Say why an output cannot be shown (missing, incomplete, not convflow's), or None when complete."""
    try:
        state = check_output(target.path, target.array, resume=True, **target.options).state
    except ConvflowError as err:
        return f"cannot be read as a finished output ({err})"
    return None if state == "complete" else {"new": "does not exist", "resume": "is incomplete"}[state]
