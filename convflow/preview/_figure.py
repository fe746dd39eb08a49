"""Drawing previews: a grid of panels, each with robust contrast, a colour bar and a title.

matplotlib draws off screen (its Agg renderer, through `Figure` rather than
pyplot, so no window, backend or global state is touched) and is imported
only when a picture is drawn.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from convflow.errors import ArgumentError

__all__ = [
    "DPI",
    "PANEL_PIXELS",
    "PERCENTILES",
    "TITLE_LINE_PIXELS",
    "Panel",
    "contrast_limits",
    "figure_pixels",
    "render",
]

# Each panel is a PANEL_PIXELS square; integer inches at DPI keep the picture's size exact.
DPI = 80
PANEL_PIXELS = 320
# Inside a panel's square: room for the title (three lines), tick labels and the colour bar.
_MARGINS = {"left": 52, "right": 66, "top": 50, "bottom": 38}
_BAR_WIDTH, _BAR_GAP = 10, 8
# The figure's title: lines of this many pixels, wrapped to the picture's width.
TITLE_LINE_PIXELS = 16
_TITLE_PAD = 12
_TITLE_CHAR_PIXELS = 6.5
_PANEL_TITLE_CHARS = 52
# Contrast runs from the 1st to the 99th percentile: a few hot or dead pixels do not flatten the rest.
PERCENTILES = (1.0, 99.0)


class Panel(NamedTuple):
    """One picture of a grid: a title and a 1-D or 2-D array.

    A plain ``(title, values)`` tuple is a panel too.  `axes` names the
    array's axes (``'yx'``) for the axis labels, and `where` is the index it
    was cut with from a larger array, whose slices give the tick positions.
    """

    title: str
    values: np.ndarray
    axes: str = ""
    where: tuple[int | slice, ...] = ()


def figure_pixels(rows: int, columns: int, *, title: str | None = None) -> tuple[int, int]:
    """Return the (height, width) in pixels of a picture of `rows` x `columns` panels and `title`.

    Examples
    --------
    >>> figure_pixels(1, 3), figure_pixels(2, 1, title="a volume")
    ((320, 960), (668, 320))
    """
    width = columns * PANEL_PIXELS
    band = 0 if title is None else len(_wrap(title, width)) * TITLE_LINE_PIXELS + _TITLE_PAD
    return rows * PANEL_PIXELS + band, width


def _wrap(title: str, width: int) -> list[str]:
    """Return `title` wrapped into lines that fit `width` pixels."""
    return textwrap.wrap(title, max(int(width / _TITLE_CHAR_PIXELS), 20)) or [""]


def contrast_limits(
    values: ArrayLike, percentiles: tuple[float, float] = PERCENTILES
) -> tuple[float, float, str]:
    """Return the display range and colour map for `values`, robust to outliers.

    The range runs between the two percentiles of the finite values.  Data
    of both signs gets a range symmetric about zero and a diverging map, so
    that zero is white; a range the percentiles make flat (a few bright
    voxels in an empty window) widens to the minimum and maximum.

    Examples
    --------
    >>> contrast_limits(np.arange(101.0))
    (1.0, 99.0, 'gray')
    >>> contrast_limits([-4.0, 1.0, 2.0], percentiles=(0, 100))
    (-4.0, 4.0, 'RdBu_r')
    >>> contrast_limits(np.r_[np.zeros(1000), 7.0])
    (0.0, 7.0, 'gray')
    """
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0, 1.0, "gray"
    low, high = (float(p) for p in np.percentile(finite, percentiles))
    if low < 0 < high:
        reach = max(-low, high)
        return -reach, reach, "RdBu_r"
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return low, high, "gray"


def render(
    rows: Sequence[Sequence[Panel | tuple[str, ArrayLike] | None]],
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Draw rows of panels into a picture file.

    Each 2-D panel is an image with its own contrast (see `contrast_limits`)
    and colour bar; a 1-D panel is a line.  Every title gets a second line
    with the array's dtype and the range of its values.  The picture is
    exactly `figure_pixels` in size.

    Parameters
    ----------
    rows : sequence of sequences of Panel or (title, array)
        Rows of the grid; a short row, or None in a row, leaves cells empty.
    out : str or path-like
        The file to write, replaced if it exists; its folder is made if
        missing.  The suffix picks the format: ``.png``, or any other that
        matplotlib writes (``.svg``, ``.pdf``...).
    title : str, optional
        A line above the grid.

    Returns
    -------
    pathlib.Path
        `out`.

    Raises
    ------
    convflow.errors.ArgumentError
        No panels, a panel that is not 1-D or 2-D, or a suffix matplotlib
        cannot write.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.png")
    >>> render([[("ramp", np.arange(12.0).reshape(3, 4))]], path).name
    'ramp.png'
    """
    # Imported here: only drawing a picture pays for matplotlib's import.
    from matplotlib.figure import Figure

    grid = [[None if p is None else Panel(*p) for p in row] for row in rows]
    columns = max((len(row) for row in grid), default=0)
    if columns == 0:
        raise ArgumentError("render got no panels; give at least one row with a (title, array) panel")
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".") or "png"
    height, width = figure_pixels(len(grid), columns, title=title)
    # A fixed layout, computed here rather than by matplotlib's layout engines: the same
    # for every picture, and several times faster to draw.
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    if suffix not in figure.canvas.get_supported_filetypes():
        supported = ", ".join(sorted(figure.canvas.get_supported_filetypes()))
        raise ArgumentError(f"cannot write a picture to {str(out)!r}: end it in .png, or one of: {supported}")
    if title is not None:
        lines = _wrap(title, width)
        top = 1 - (_TITLE_PAD / 2) / height
        figure.text(0.5, top, "\n".join(lines), ha="center", va="top", fontsize=9, linespacing=1.3)
    for r, panels in enumerate(grid):
        for c, panel in enumerate(panels):
            if panel is not None:
                _draw(figure, panel, _cell(len(grid) - 1 - r, c, height, width))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format=suffix, dpi=DPI)
    return out


def _cell(above: int, column: int, height: int, width: int) -> tuple[list[float], list[float]]:
    """Return the figure-fraction rectangles of a plot and its colour bar, `above` rows from the bottom."""
    left = column * PANEL_PIXELS + _MARGINS["left"]
    bottom = above * PANEL_PIXELS + _MARGINS["bottom"]
    box_width = PANEL_PIXELS - _MARGINS["left"] - _MARGINS["right"]
    box_height = PANEL_PIXELS - _MARGINS["top"] - _MARGINS["bottom"]
    bar_left = left + box_width + _BAR_GAP
    plot = [left / width, bottom / height, box_width / width, box_height / height]
    bar = [bar_left / width, bottom / height, _BAR_WIDTH / width, box_height / height]
    return plot, bar


def _draw(figure: Any, panel: Panel, cell: tuple[list[float], list[float]]) -> None:
    """Draw one panel into its cell: image and colour bar, or a line."""
    values = np.asarray(panel.values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.ndim not in (1, 2) or values.dtype.kind not in "biuf":
        raise ArgumentError(
            f"panel {panel.title.splitlines()[0]!r} holds a {values.ndim}-d {values.dtype} array; "
            "a panel is a 1-D or 2-D numeric array"
        )
    plot, bar = cell
    axes = figure.add_axes(plot, anchor="E")
    lines = [_shorten(line) for line in [*panel.title.splitlines(), _range_text(np.asarray(panel.values))]]
    axes.set_title("\n".join(lines), fontsize=8)
    axes.tick_params(labelsize=7)
    starts = [s.start or 0 for s in panel.where if isinstance(s, slice)] or [0] * values.ndim
    labels = panel.axes if len(panel.axes) == values.ndim else ""
    if values.ndim == 1:
        axes.plot(starts[0] + np.arange(values.size), values, linewidth=0.8)
        if labels:
            axes.set_xlabel(labels, fontsize=8, labelpad=1)
        return
    low, high, cmap = contrast_limits(values)
    (top, left), (rows, columns) = starts, values.shape
    image = axes.imshow(
        values,
        cmap=cmap,
        vmin=low,
        vmax=high,
        interpolation="nearest",
        # Ticks count pixels of the whole array, not of the window.
        extent=(left - 0.5, left + columns - 0.5, top + rows - 0.5, top - 0.5),
    )
    colorbar = figure.colorbar(image, cax=figure.add_axes(bar))
    colorbar.ax.tick_params(labelsize=7)
    if labels:
        axes.set_ylabel(labels[0], fontsize=8, labelpad=1)
        axes.set_xlabel(labels[1], fontsize=8, labelpad=1)


def _shorten(line: str) -> str:
    """Return `line`, cut in the middle to fit a panel's width.

    Examples
    --------
    >>> _shorten("x" * 60)
    'xxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxx'
    """
    if len(line) <= _PANEL_TITLE_CHARS:
        return line
    keep = _PANEL_TITLE_CHARS - 3
    return f"{line[: (keep + 1) // 2]}...{line[len(line) - keep // 2 :]}"


def _range_text(values: np.ndarray) -> str:
    """Return ``'dtype, min to max'`` of the finite values shown.

    Examples
    --------
    >>> _range_text(np.array([3, 250], dtype=np.uint8))
    'uint8, 3 to 250'
    >>> _range_text(np.array([np.nan], dtype=np.float32))
    'float32, no finite values'
    """
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.astype(np.int64)
    if values.dtype == bool:
        return f"bool, {finite.min()} to {finite.max()}"
    if finite.size == 0:
        return f"{values.dtype}, no finite values"
    return f"{values.dtype}, {finite.min():.4g} to {finite.max():.4g}"
