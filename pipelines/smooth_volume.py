"""Smooth a 3-D volume from zarr to zarr with a Gaussian, chunk by chunk.

With ``--generate`` a sample volume (a noisy sphere) is written first, so the
pipeline runs on a fresh machine with nothing downloaded.

    python pipelines/smooth_volume.py --generate data/sample.zarr out/smooth.zarr
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import zarr

import convflow


def gaussian_1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian scipy.ndimage.gaussian_filter uses."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def generate(path: Path, size: int, chunk: int) -> None:
    """Write a noisy sphere of `size`^3 uint16 voxels to a zarr v3 array at `path`."""
    z, y, x = np.ogrid[:size, :size, :size]
    centre = (size - 1) / 2
    sphere = ((z - centre) ** 2 + (y - centre) ** 2 + (x - centre) ** 2) < (size / 3) ** 2
    noise = np.random.default_rng(0).normal(0, 200, (size,) * 3)
    volume = np.clip(1000 + 2000 * sphere + noise, 0, 65535).astype(np.uint16)
    array = zarr.create_array(str(path), shape=volume.shape, chunks=(chunk,) * 3, dtype=volume.dtype)
    array[...] = volume


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="zarr array to read (3-D)")
    parser.add_argument("output", type=Path, help="zarr array to write; must not exist")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma in voxels (default 2)")
    parser.add_argument("--generate", action="store_true", help="first write a sample volume at INPUT")
    parser.add_argument("--size", type=int, default=128, help="edge of the generated volume (default 128)")
    args = parser.parse_args(argv)

    if args.output.exists():
        print(f"error: {args.output} exists; remove it or choose another output path", file=sys.stderr)
        return 2
    if args.generate and not args.input.exists():
        generate(args.input, args.size, chunk=max(1, args.size // 2))
    if not args.input.exists():
        print(f"error: input {args.input} does not exist; pass --generate to make a sample", file=sys.stderr)
        return 2

    image = da.from_zarr(str(args.input))
    g = gaussian_1d(args.sigma)
    kernel = np.einsum("i,j,k->ijk", g, g, g)
    smoothed = convflow.convolve(image, kernel, dtype=image.dtype)
    smoothed.to_zarr(str(args.output))
    print(f"wrote {args.output}: shape {smoothed.shape}, dtype {smoothed.dtype}, chunks {smoothed.chunksize}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
