"""Reading .npy files memory-mapped, chunk by chunk."""

from __future__ import annotations

import numpy as np

from convflow.errors import InputFormatError
from convflow.io._image import InputImage, LazyFile, auto_chunks, default_axes, parse_chunks


def open_npy(path: str, chunks: object) -> InputImage:
    """Open the .npy at `path` lazily; only its header is read now."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise InputFormatError(
            f"{path}: not a readable .npy file ({err}); write it with numpy.save, "
            "or use a .zarr or .tif input"
        ) from err
    shape, dtype = tuple(int(n) for n in mapped.shape), mapped.dtype
    del mapped  # the header was all that was needed; blocks map the file again where they run
    if dtype.kind not in "biuf" or not shape:
        raise InputFormatError(
            f"{path}: holds {len(shape)}-d {dtype} data; convflow reads numeric arrays with at least one axis"
        )
    working = parse_chunks(chunks, shape) or auto_chunks(shape, dtype.itemsize)
    array = LazyFile(_memmap, (path,), shape, dtype).to_dask(path, working)
    return InputImage(array=array, axes=default_axes(len(shape)), path=path, format="npy", axes_guessed=True)


def _memmap(path: str) -> np.ndarray:
    """Open `path` read-only and memory-mapped (what LazyFile calls on first access)."""
    return np.load(path, mmap_mode="r", allow_pickle=False)
