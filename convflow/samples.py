"""Synthetic sample data for the examples: seeded, made with numpy, no download.

The example configs in ``configs/`` run on small files made by this module
and shipped with the repository; the same functions make larger data to try
convflow at scale.  From the repository root::

    python -m convflow.samples shapes configs/data/shapes.tif
    python -m convflow.samples volume configs/data/large/volume.zarr --size 512
    python -m convflow.samples tiffs configs/data/large/scans --count 16 --size 512

Every command refuses to replace an existing path unless given
``--overwrite``, and ``python -m convflow.samples COMMAND --help`` lists its
options.  The same seed and parameters give the same data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
import zarr
from numpy.typing import DTypeLike

__all__ = ["blobs", "main", "shapes", "write_shapes", "write_tiffs", "write_volume"]

# Voxels per blob: a 64^3 volume gets 33 blobs, a 512^3 volume 16777.
_VOXELS_PER_BLOB = 20**3
# Blob widths (Gaussian sigma, in voxels), the scale a difference of Gaussians with
# sigmas near 1.5 and 3 picks out.
_BLOB_SIGMA = (1.5, 3.5)
# Above the background, a blob's peak reaches this fraction of the dtype's usable range.
_LEVELS = {
    "uint8": (20.0, 180.0, 6.0),  # background, peak height, noise sigma
    "uint16": (1000.0, 3000.0, 150.0),
}


def shapes(size: int = 256, *, seed: int = 0) -> np.ndarray:
    """Return a 2-D uint8 image of shapes on a gradient, with a textured patch and noise.

    A rectangle, a disk, a triangle, a ring, a striped square and a thin
    cross of random sizes, places and grey levels, over a gentle gradient
    with mild noise: edges in every direction for edge detectors, and fine
    texture for smoothing to remove.

    Parameters
    ----------
    size : int, optional
        Height and width in pixels, at least 16.
    seed : int, optional
        Seed of the random layout and noise.

    Returns
    -------
    numpy.ndarray
        Shape ``(size, size)``, dtype uint8.

    Raises
    ------
    ValueError
        `size` is smaller than 16.

    Examples
    --------
    >>> image = shapes(64)
    >>> image.shape, image.dtype
    ((64, 64), dtype('uint8'))
    >>> bool((shapes(64, seed=1) == shapes(64, seed=1)).all())
    True
    """
    size = _check_size(size, "size", minimum=16)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size  # coordinates in [0, 1)
    image = 40 + 30 * (0.6 * x + 0.4 * y)
    stripes = 130 + 60 * np.sin(2 * np.pi * (x + y) * size / 6)  # diagonal, a period of 6 pixels
    # One shape per cell of a 3 x 2 grid, in a random order, so that no two overlap.
    cells = [(row, col) for row in range(2) for col in range(3)]
    for (row, col), kind in zip(cells, rng.permutation(6), strict=True):
        r = rng.uniform(0.09, 0.13)
        cy = (row + 0.5) / 2 + rng.uniform(-0.1, 0.1) * (0.25 - r) / 0.15
        cx = (col + 0.5) / 3 + rng.uniform(-0.03, 0.03)
        dy, dx = y - cy, x - cx
        level = rng.uniform(120, 250)
        if kind == 0:  # a rectangle, wider than high
            image[(abs(dy) < 0.7 * r) & (abs(dx) < r)] = level
        elif kind == 1:  # a disk
            image[dy**2 + dx**2 < r**2] = level
        elif kind == 2:  # a triangle, apex up
            image[(dy < 0.8 * r) & (abs(dx) < (dy + r) / 1.8)] = level
        elif kind == 3:  # a ring
            d = np.hypot(dy, dx)
            image[(d < r) & (d > 0.6 * r)] = level
        elif kind == 4:  # a striped square: texture for smoothing to remove
            patch = (abs(dy) < 0.85 * r) & (abs(dx) < 0.85 * r)
            image[patch] = stripes[patch]
        else:  # a thin cross: lines one to two pixels wide
            width = max(1.0, size / 200) / size
            image[((abs(dy) < width) & (abs(dx) < r)) | ((abs(dx) < width) & (abs(dy) < r))] = level

    image += rng.normal(0, 4, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def blobs(
    shape: int | Sequence[int] = 64,
    *,
    dtype: DTypeLike = "uint16",
    seed: int = 0,
) -> np.ndarray:
    """Return a noisy 3-D volume of Gaussian blobs, like nuclei in a microscope stack.

    One blob per 20^3 voxels (at least 4), each a Gaussian of sigma 1.5 to
    3.5 voxels at a random position, over a flat background with Gaussian
    noise.  Made one z-slice at a time (`write_volume` does the same into
    zarr), so the noise does not depend on chunking.

    Parameters
    ----------
    shape : int or sequence of int, optional
        ``(Z, Y, X)``, or one edge for a cube; each at least 4.
    dtype : {'uint16', 'uint8'}, optional
        uint16: background 1000, blob peaks about 4000, noise sigma 150.
        uint8: background 20, blob peaks about 200, noise sigma 6.
    seed : int, optional
        Seed of the blob layout and the noise.

    Returns
    -------
    numpy.ndarray
        Of the given shape and dtype.

    Raises
    ------
    ValueError
        A bad shape or dtype.

    Examples
    --------
    >>> volume = blobs((8, 32, 32), dtype="uint8")
    >>> volume.shape, volume.dtype
    ((8, 32, 32), dtype('uint8'))
    """
    full = _check_shape(shape)
    layout = _Blobs(full, _check_dtype(dtype), seed)
    return np.concatenate([layout.slab(z, z + 1) for z in range(full[0])])


def write_shapes(path: str | os.PathLike[str], size: int = 256, *, seed: int = 0) -> Path:
    """Write `shapes` to a zlib-compressed TIFF at `path` and return the path.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> path = write_shapes(tempfile.mkdtemp() + "/shapes.tif", size=32)
    >>> tifffile.imread(path).shape
    (32, 32)
    """
    path = Path(path)
    tifffile.imwrite(path, shapes(size, seed=seed), compression="zlib")
    return path


def write_volume(
    path: str | os.PathLike[str],
    size: int | Sequence[int] = 128,
    *,
    chunks: int | Sequence[int] | None = None,
    dtype: DTypeLike = "uint16",
    seed: int = 0,
) -> zarr.Array:
    """Write `blobs` to a zarr v3 array at `path`, a slab at a time, and return the array.

    Memory stays near one slab of chunk depth, so volumes far larger than
    memory can be made.

    Parameters
    ----------
    path : str or path-like
        The ``.zarr`` folder to create.
    size : int or sequence of int, optional
        ``(Z, Y, X)``, or one edge for a cube.
    chunks : int or sequence of int, optional
        Storage chunks; default a cube of half the smallest edge, between 16
        and 128 voxels.
    dtype : {'uint16', 'uint8'}, optional
        As for `blobs`.
    seed : int, optional
        As for `blobs`.

    Returns
    -------
    zarr.Array
        The written array (zstd-compressed, zarr's default).

    Examples
    --------
    >>> import tempfile
    >>> array = write_volume(tempfile.mkdtemp() + "/v.zarr", (8, 16, 16), chunks=8, dtype="uint8")
    >>> array.shape, array.chunks, str(array.dtype)
    ((8, 16, 16), (8, 8, 8), 'uint8')
    """
    full = _check_shape(size)
    dtype = _check_dtype(dtype)
    if chunks is None:
        chunks = min(128, max(16, min(full) // 2))
    chunk_shape = tuple(
        min(c, n) for c, n in zip(_check_shape(chunks, "chunks", minimum=1), full, strict=True)
    )
    array = zarr.create_array(store=str(path), shape=full, chunks=chunk_shape, dtype=dtype, zarr_format=3)
    layout = _Blobs(full, dtype, seed)
    depth = chunk_shape[0]
    for z in range(0, full[0], depth):
        array[z : z + depth] = layout.slab(z, min(z + depth, full[0]))
    return array


def write_tiffs(
    folder: str | os.PathLike[str],
    count: int = 4,
    size: int = 128,
    *,
    depth: int | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write `count` small TIFF images (or stacks) to `folder`: ``scan_000.tif``, ``scan_001.tif``, ...

    Parameters
    ----------
    folder : str or path-like
        Created if missing.
    count : int, optional
        Number of files.
    size : int, optional
        Height and width of each image.
    depth : int, optional
        Write 3-D stacks of `depth` slices of uint16 `blobs` instead of 2-D
        uint8 `shapes` images.
    seed : int, optional
        File ``i`` uses seed ``seed + i``.

    Returns
    -------
    list of pathlib.Path
        The files, in order.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> paths = write_tiffs(tempfile.mkdtemp(), count=2, size=16)
    >>> [p.name for p in paths], tifffile.imread(paths[1]).shape
    (['scan_000.tif', 'scan_001.tif'], (16, 16))
    """
    count = _check_size(count, "count", minimum=1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(count - 1)))
    paths = []
    for i in range(count):
        if depth is None:
            image = shapes(size, seed=seed + i)
        else:
            image = blobs((_check_size(depth, "depth", minimum=4), size, size), seed=seed + i)
        path = folder / f"scan_{i:0{width}d}.tif"
        tifffile.imwrite(path, image, compression="zlib")
        paths.append(path)
    return paths


class _Blobs:
    """A random blob layout over a volume, rendered a z-slab at a time."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype, seed: int):
        self.shape, self.dtype, self.seed = shape, dtype, seed
        rng = np.random.default_rng([seed, 0])
        count = max(4, round(np.prod(shape) / _VOXELS_PER_BLOB))
        self.centres = rng.uniform(0, 1, (count, 3)) * (np.array(shape) - 1)
        self.sigmas = rng.uniform(*_BLOB_SIGMA, count)
        self.heights = rng.uniform(0.5, 1.0, count)

    def slab(self, start: int, stop: int) -> np.ndarray:
        """Return z-slices ``start:stop``, noise included, in the layout's dtype."""
        background, peak, noise = _LEVELS[self.dtype.name]
        _, ny, nx = self.shape
        out = np.zeros((stop - start, ny, nx), dtype=np.float32)  # float32: half the memory per slab
        reach = 4 * self.sigmas
        near = (self.centres[:, 0] + reach >= start) & (self.centres[:, 0] - reach < stop)
        for (cz, cy, cx), sigma, height, r in zip(
            self.centres[near], self.sigmas[near], self.heights[near], reach[near], strict=True
        ):
            # Add each blob inside its bounding box only: a large volume has thousands.
            z0, z1 = max(start, int(cz - r)), min(stop, int(cz + r) + 1)
            y0, y1 = max(0, int(cy - r)), min(ny, int(cy + r) + 1)
            x0, x1 = max(0, int(cx - r)), min(nx, int(cx + r) + 1)
            z, y, x = np.ogrid[z0:z1, y0:y1, x0:x1]
            d2 = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
            out[z0 - start : z1 - start, y0:y1, x0:x1] += height * np.exp(-d2 / (2 * sigma**2))
        out = background + peak * out
        for z in range(start, stop):
            # One generator per slice: the noise is the same however the volume is slabbed.
            rng = np.random.default_rng([self.seed, 1, z])
            out[z - start] += noise * rng.standard_normal((ny, nx), dtype=np.float32)
        info = np.iinfo(self.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(self.dtype)


def _check_size(value: int, name: str, *, minimum: int) -> int:
    """Return `value` as an int, or raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r}: give an integer of at least {minimum}")
    return int(value)


def _check_shape(
    value: int | Sequence[int], name: str = "shape", *, minimum: int = 4
) -> tuple[int, int, int]:
    """Return a 3-D shape from one edge or three, or raise ValueError naming `name`."""
    edges = [value] * 3 if isinstance(value, int | np.integer) else list(value)
    if len(edges) != 3:
        raise ValueError(f"{name}={value!r}: give one edge or three, (Z, Y, X)")
    z, y, x = (_check_size(e, name, minimum=minimum) for e in edges)
    return z, y, x


def _check_dtype(dtype: DTypeLike) -> np.dtype:
    """Return uint8 or uint16 as a numpy dtype, or raise ValueError."""
    try:
        result = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype={dtype!r}: give uint8 or uint16") from err
    if result.name not in _LEVELS:
        raise ValueError(f"dtype={dtype!r}: give uint8 or uint16")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convflow.samples",
        description="Write synthetic sample data for the convflow examples (no download).",
        epilog="The files in configs/data were made with:\n"
        "  python -m convflow.samples shapes configs/data/shapes.tif\n"
        "  python -m convflow.samples volume configs/data/volume.zarr --size 64 --dtype uint8\n"
        "  python -m convflow.samples tiffs configs/data/scans --count 4 --size 96",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
        return sub

    sub = command("shapes", "a 2-D uint8 TIFF image of shapes and texture")
    sub.add_argument("path", type=Path, help="the .tif file to write")
    sub.add_argument("--size", type=int, default=256, help="height and width (default 256)")

    sub = command("volume", "a noisy 3-D zarr v3 volume of Gaussian blobs")
    sub.add_argument("path", type=Path, help="the .zarr folder to write")
    sub.add_argument(
        "--size", type=int, nargs="+", default=[128], metavar="N", help="edge, or Z Y X (default 128)"
    )
    sub.add_argument(
        "--chunks", type=int, nargs="+", metavar="N", help="chunk edge, or Z Y X (default size/2)"
    )
    sub.add_argument("--dtype", choices=sorted(_LEVELS), default="uint16", help="(default uint16)")

    sub = command("tiffs", "a folder of small TIFF images (2-D shapes, or 3-D blob stacks with --depth)")
    sub.add_argument("path", type=Path, help="the folder to write scan_000.tif, scan_001.tif, ... into")
    sub.add_argument("--count", type=int, default=4, help="number of files (default 4)")
    sub.add_argument("--size", type=int, default=128, help="height and width (default 128)")
    sub.add_argument("--depth", type=int, help="write 3-D uint16 stacks of DEPTH slices")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m convflow.samples``; return 0 on success, 2 on a usage error."""
    args = _parser().parse_args(argv)
    path: Path = args.path
    try:
        _check_arguments(args)
        _make_room(path, args.command, overwrite=args.overwrite)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.command == "shapes":
        write_shapes(path, args.size, seed=args.seed)
        print(f"wrote {path}: {args.size}x{args.size} uint8")
    elif args.command == "volume":
        array = write_volume(
            path,
            _one_or_three(args.size),
            chunks=_one_or_three(args.chunks),
            dtype=args.dtype,
            seed=args.seed,
        )
        print(f"wrote {path}: shape {array.shape}, {array.dtype}, chunks {array.chunks}")
    else:
        paths = write_tiffs(path, args.count, args.size, depth=args.depth, seed=args.seed)
        print(f"wrote {len(paths)} files to {path}: {paths[0].name} ... {paths[-1].name}")
    return 0


def _one_or_three(values: list[int] | None) -> int | list[int] | None:
    """One number for a cube, or the list as given."""
    return values[0] if values is not None and len(values) == 1 else values


def _check_arguments(args: argparse.Namespace) -> None:
    """Raise ValueError for a bad size, count, depth or chunks, before anything is written."""
    if args.command == "shapes":
        _check_size(args.size, "--size", minimum=16)
    elif args.command == "volume":
        _check_shape(_one_or_three(args.size), "--size")
        if args.chunks is not None:
            _check_shape(_one_or_three(args.chunks), "--chunks", minimum=1)
    else:
        _check_size(args.count, "--count", minimum=1)
        if args.depth is None:
            _check_size(args.size, "--size", minimum=16)
        else:
            _check_size(args.size, "--size", minimum=4)
            _check_size(args.depth, "--depth", minimum=4)


def _make_room(path: Path, command: str, *, overwrite: bool) -> None:
    """Refuse to replace data unless `overwrite`; then remove only what a sample command writes."""
    if command == "tiffs" and path.is_dir():
        # Writing into an existing folder is fine as long as no scans would be replaced.
        old = sorted(path.glob("scan_*.tif"))
        if old and not overwrite:
            raise ValueError(f"{old[0]} exists; remove the scans, choose another folder or pass --overwrite")
        for file in old:
            file.unlink()
        return
    if not (path.exists() or path.is_symlink()):
        return
    if command == "tiffs":
        raise ValueError(f"{path} exists and is not a folder; choose another path")
    if path.is_dir() and command == "shapes":
        raise ValueError(f"{path} is a folder; give a .tif file path")
    if not overwrite:
        raise ValueError(f"{path} exists; remove it, choose another path or pass --overwrite")
    if command == "volume":
        if not (path / "zarr.json").is_file() and not (path / ".zarray").is_file():
            # Never delete a folder that is not a zarr array: it may hold anything.
            raise ValueError(f"{path} exists and is not a zarr array; choose another path")
        shutil.rmtree(path)


if __name__ == "__main__":
    sys.exit(main())
