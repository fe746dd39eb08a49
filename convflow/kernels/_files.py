"""Kernels read from .npy, .txt and .csv files, with errors that name the file and line."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from convflow.errors import KernelError
from convflow.kernels._kernel import Kernel, as_weights, check_normalize, normalized

FILE_SUFFIXES = (".npy", ".txt", ".csv")


def load(path: str | os.PathLike[str], *, name: str | None = None, normalize: bool = False) -> Kernel:
    """Return the kernel stored in a ``.npy``, ``.txt`` or ``.csv`` file.

    Parameters
    ----------
    path : str or path-like
        ``.npy``: a numpy array of real numbers with 1 to 3 axes (saved
        without pickling).  ``.txt``: numbers separated by spaces or commas,
        one row per line.  ``.csv``: numbers separated by commas, one row per
        line.  In text files ``#`` starts a comment; one row gives a 1-D
        kernel, several rows a 2-D kernel, and blocks of rows separated by
        blank lines the slices of a 3-D kernel.
    name : str, optional
        A label for messages and provenance; default the file's stem.
    normalize : bool, optional
        Scale the weights to sum 1.

    Returns
    -------
    Kernel
        With ``params == {'file': str(path)}``.

    Raises
    ------
    convflow.errors.KernelError
        The file is missing, a folder or unreadable, has another suffix, or
        holds anything but a finite real array of 1 to 3 axes.  The message
        names the file, and for a text file the line.

    See Also
    --------
    from_array : a kernel from numbers already in memory.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from convflow import kernels
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "cross.csv"
    ...     _ = path.write_text("0, 1, 0\\n1, 1, 1\\n0, 1, 0\\n")
    ...     k = kernels.load(path, normalize=True)
    >>> k.name, k.description
    ('cross', '3x3 kernel from cross.csv')
    >>> k.values[1]
    array([0.2, 0.2, 0.2])
    """
    path = Path(path)
    what = f"kernel file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise KernelError(f"{what} has suffix {path.suffix!r}; kernel files are {', '.join(FILE_SUFFIXES)}")
    if not path.exists():
        raise KernelError(f"{what} does not exist (looked for {path.resolve()}); check the path")
    if path.is_dir():
        raise KernelError(f"{what} is a folder; give a {', '.join(FILE_SUFFIXES)} file")
    normalize = check_normalize(what, normalize)
    values = read_npy(path, what) if suffix == ".npy" else read_text(path, what, comma_only=suffix == ".csv")
    array = as_weights(values, what)
    if normalize:
        array, _ = normalized(what, array, None)
    shape = "x".join(str(n) for n in array.shape)
    return Kernel(
        array,
        name=path.stem if name is None else name,
        description=f"{shape} kernel from {path.name}",
        params={"file": str(path)},
    )


def read_npy(path: Path, what: str) -> np.ndarray:
    """The array in a .npy file, never unpickling anything."""
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise KernelError(f"{what} is not a readable .npy array: {err}") from err
    if not isinstance(values, np.ndarray):  # np.load opens .npz archives whatever the suffix
        values.close()
        raise KernelError(f"{what} is an .npz archive, not a .npy array; save the kernel with np.save")
    return values


def read_text(path: Path, what: str, *, comma_only: bool) -> np.ndarray:
    """Parse a text kernel: rows of numbers, one per line; blank lines between 3-D slices."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise KernelError(f"{what} cannot be read as UTF-8 text: {err}") from err
    separator = re.compile(r"\s*,\s*" if comma_only else r"[\s,]+")
    slices: list[list[tuple[int, list[float]]]] = [[]]  # per slice: (line number, row)
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if slices[-1]:
                slices.append([])
            continue
        content = line.split("#", 1)[0].strip()
        if not content:
            continue  # a comment line neither holds numbers nor ends a slice
        row = []
        for token in separator.split(content):
            try:
                row.append(float(token))
            except ValueError as err:
                shown = repr(token) if token else "an empty field"
                raise KernelError(
                    f"{what} line {number}: {shown} is not a number; a kernel file holds only numbers "
                    "(start a header or note with #)"
                ) from err
            if not math.isfinite(row[-1]):
                raise KernelError(f"{what} line {number} holds {token!r}; every weight must be finite")
        slices[-1].append((number, row))
    slices = [rows for rows in slices if rows]
    if not slices:
        raise KernelError(f"{what} holds no numbers; write one row of the kernel per line")
    first_line, first_row = slices[0][0]
    for rows in slices:
        for number, row in rows:
            if len(row) != len(first_row):
                raise KernelError(
                    f"{what} line {number} has {len(row)} values but line {first_line} has "
                    f"{len(first_row)}; every row needs the same number of values"
                )
        if len(rows) != len(slices[0]):
            raise KernelError(
                f"{what}: the slice starting on line {rows[0][0]} has {len(rows)} rows but the first "
                f"has {len(slices[0])}; every slice of a 3-D kernel needs the same number of rows"
            )
    array: np.ndarray = np.array([[row for _, row in rows] for rows in slices])
    if len(slices) == 1:
        array = array[0, 0] if len(slices[0]) == 1 else array[0]
    return array
