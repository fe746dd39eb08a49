"""Smooth a 3-D volume with a Gaussian, chunk by chunk, zarr to zarr.

The result equals ``scipy.ndimage.gaussian_filter(volume, sigma)`` on the
whole array (truncated at 4 sigma, mode reflect), computed one chunk at a
time with a halo from its neighbours, and stored in the input's dtype
(integers rounded half to even and clipped). With ``--generate`` a sample
volume (noisy blobs, uint16, from ``convflow.samples``) is written at INPUT
first, so the pipeline runs on a fresh machine with nothing downloaded::

    python pipelines/smooth_volume.py --generate data/sample.zarr out/smooth.zarr
    python pipelines/smooth_volume.py configs/data/volume.zarr out/volume_smooth.zarr --sigma 1.5

INPUT may be any volume convflow reads (zarr, OME-Zarr, TIFF, .npy); the
blur runs over its last three axes. Exit code 0 on success, 2 on a bad
argument, a missing input or an existing output, 1 when writing fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import convflow
import convflow.io
import convflow.samples
from convflow.errors import ConvflowError, OutputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", type=Path, help="volume to read (3-D or more: the last three axes are zyx)")
    parser.add_argument("output", type=Path, help="zarr array to write; must not exist")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian sigma in voxels (default 2)")
    parser.add_argument("--generate", action="store_true", help="first write a sample volume at INPUT")
    parser.add_argument("--size", type=int, default=128, help="edge of the generated volume (default 128)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)

    # Checked before --generate, so a mistake costs no generating.
    if args.output.exists() and not args.overwrite:
        print(
            f"error: {args.output} exists; remove it, choose another output path or pass --overwrite",
            file=sys.stderr,
        )
        return 2
    if args.generate and not args.input.exists():
        try:
            convflow.samples.write_volume(args.input, args.size)
        except ValueError as err:
            print(f"error: --size: {err}", file=sys.stderr)
            return 2
    if not args.input.exists():
        print(
            f"error: input {args.input} does not exist; pass --generate to make a sample there",
            file=sys.stderr,
        )
        return 2

    try:
        volume = convflow.io.open_input(args.input)
        if volume.ndim < 3:
            print(
                f"error: {args.input} has shape {volume.shape}; give a volume of 3 or more axes",
                file=sys.stderr,
            )
            return 2
        kernel = convflow.kernels.get("gaussian", sigma=args.sigma, ndim=3)
        smoothed = convflow.convolve(volume.array, kernel)
        report = convflow.io.write_output(
            smoothed,
            args.output,
            format="zarr",
            dtype=volume.dtype,
            inputs=[volume],
            provenance={"pipeline": "smooth_volume", "sigma": args.sigma},
            overwrite=args.overwrite,
        )
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ConvflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report.path}: shape {smoothed.shape}, dtype {volume.dtype}, chunks {smoothed.chunksize}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
