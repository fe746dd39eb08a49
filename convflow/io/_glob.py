"""A glob of files ("scans/*.tif") stacked, in sorted order, along a new leading batch axis."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable

import dask.array as da

from convflow.errors import InputFormatError, InputNotFoundError
from convflow.io._image import InputImage

# Letters tried, in order, for the new leading axis.
_STACK_LETTERS = "bnqrsuvw"


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
    letter = next(c for c in _STACK_LETTERS if c not in first.axes)
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
    )
