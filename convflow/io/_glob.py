"""A glob of files ("scans/*.tif") stacked, in sorted order, along a new leading batch axis."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

import dask.array as da

from convflow.errors import ArgumentError, InputFormatError, InputNotFoundError
from convflow.io._image import InputImage, default_axes, parse_axis_letters

# Letters tried, in order, for the new leading axis.
_STACK_LETTERS = "bnqrsuvw"


def stack_letter(file_axes: str) -> str:
    """Return the letter of the batch axis over the files: the first of ``bnqrsuvw`` not in `file_axes`.

    Examples
    --------
    >>> stack_letter("yx"), stack_letter("bzyx")
    ('b', 'n')
    """
    return next(c for c in _STACK_LETTERS + "acdefghijklmop" if c not in file_axes)


def parse_glob_axes(axes: object, shape: tuple[int, ...], count: int) -> str:
    """Return the letters of a glob's stacked axes from `axes` given per file or for the whole stack.

    `shape` is the stack's (files first), `count` the number of files.  Axes
    of each file (``yx`` for 2-D TIFFs) get the leading batch letter that
    `stack_letter` picks; the full form names the axis over the files too.

    Examples
    --------
    >>> parse_glob_axes("yx", (4, 8, 9), 4), parse_glob_axes("TYX", (4, 8, 9), 4)
    ('byx', 'tyx')
    >>> parse_glob_axes("byx", (4, 3, 8, 9), 4)
    'nbyx'
    """
    if isinstance(axes, str) and len(axes) == len(shape) - 1:
        file_axes = parse_axis_letters(axes, shape[1:])
        return stack_letter(file_axes) + file_axes
    if isinstance(axes, str) and len(axes) == len(shape):
        return parse_axis_letters(axes, shape)
    if not isinstance(axes, str):
        return parse_axis_letters(axes, shape)  # its message says a string is needed
    file_axes = default_axes(len(shape) - 1)
    raise ArgumentError(
        f"axes={axes!r} does not fit the glob: it stacks {count} files of shape {tuple(shape[1:])} into "
        f"{tuple(shape)}, so name the axes of each file with {len(shape) - 1} letters "
        f"(e.g. axes={file_axes!r}) or those of the stack with {len(shape)} "
        f"(e.g. axes={stack_letter(file_axes) + file_axes!r})"
    )


def is_glob(path: str) -> bool:
    """Return whether `path` is a pattern rather than a path that exists.

    Examples
    --------
    >>> is_glob("scans/*.tif"), is_glob("volume.zarr")
    (True, False)
    """
    return glob.has_magic(path) and not os.path.exists(path)


def open_glob(pattern: str, open_one: Callable[[str], InputImage]) -> InputImage:
    """Open every file matching `pattern` with `open_one` and stack them lazily, in sorted order."""
    files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        folder = os.path.dirname(pattern) or "."
        where = f"folder {folder!r} exists" if os.path.isdir(folder) else f"folder {folder!r} does not exist"
        raise InputNotFoundError(
            f"{pattern}: the pattern matches no file ({where}); check the path and the extension, "
            "e.g. 'scans/*.tif'"
        )
    images = [open_one(files[0])]
    first = images[0]
    for path in files[1:]:
        image = open_one(path)
        if image.shape != first.shape or image.dtype != first.dtype:
            raise InputFormatError(
                f"{pattern}: {path} holds {image.shape} {image.dtype}, but {files[0]} holds "
                f"{first.shape} {first.dtype}; a glob stacks files of one shape and dtype: "
                "move the odd file out or narrow the pattern"
            )
        images.append(image)
    letter = stack_letter(first.axes)
    return InputImage(
        array=da.stack([image.array for image in images]),
        axes=letter + first.axes,
        path=pattern,
        format="glob",
        scale=None if first.scale is None else (1.0, *first.scale),
        translation=None if first.translation is None else (0.0, *first.translation),
        units=None if first.units is None else (None, *first.units),
        files=tuple(files),
        storage_chunks=None if first.storage_chunks is None else (1, *first.storage_chunks),
        codec=first.codec,
        axes_guessed=first.axes_guessed,
    )
