"""Gradient magnitude of an image or volume: Sobel along each spatial axis, combined.

Each spatial axis gets the Sobel derivative (correlated, as
``scipy.ndimage.sobel`` does), optionally after a Gaussian blur, and the
result is the square root of their sum of squares::

    sqrt(sobel(x, axis=z)**2 + sobel(x, axis=y)**2 + sobel(x, axis=x)**2)

for a volume; two terms for an image. Batch axes (time, channels, files)
get no derivative and no halo. From the repository root::

    python pipelines/gradient_magnitude.py configs/data/volume.zarr out/gradient.zarr --sigma 1

The output is float32 (float64 for 32- and 64-bit inputs) unless ``--dtype``
says otherwise. Exit code 0 on success, 2 on a bad argument, a missing input
or an existing output, 1 when writing fails.
"""

from __future__ import annotations

import argparse
import sys

import convflow
import convflow.io
from convflow.errors import ConvflowError, OutputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="image to read: zarr, OME-Zarr, TIFF, .npy or a glob")
    parser.add_argument("output", help="where to write: .zarr, .ome.zarr or .tif; must not exist")
    parser.add_argument(
        "--sigma", type=float, default=0.0, help="Gaussian blur before the derivatives (default 0: none)"
    )
    parser.add_argument(
        "--kernel",
        choices=["sobel", "prewitt", "scharr"],
        default="sobel",
        help="derivative kernel (default sobel)",
    )
    parser.add_argument(
        "--mode", default="reflect", help="boundary mode, as in scipy.ndimage (default reflect)"
    )
    parser.add_argument("--dtype", help="output dtype (default: the compute dtype, float32 or float64)")
    parser.add_argument("--dataset", help="array inside a zarr group, or OME level")
    parser.add_argument("--axes", help="axis letters, e.g. zyx or tyx (default: from the file)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    if args.sigma < 0:
        parser.error(f"--sigma {args.sigma}: give 0 (no blur) or a positive number")

    try:
        image = convflow.io.open_input(args.input, dataset=args.dataset, axes=args.axes)
        spatial = image.spatial_axes
        source = image.array
        if args.sigma > 0:
            blur = convflow.kernels.get("gaussian", sigma=args.sigma, ndim=len(spatial))
            source = convflow.convolve(source, blur, mode=args.mode, axes=spatial)
        derivatives = [
            convflow.correlate(
                source,
                convflow.kernels.get(args.kernel, axis=i, ndim=len(spatial)),
                mode=args.mode,
                axes=spatial,
            )
            for i in range(len(spatial))
        ]
        magnitude = convflow.combine("magnitude", *derivatives)
        settings = {"sigma": args.sigma, "kernel": args.kernel, "mode": args.mode}
        report = convflow.io.write_output(
            magnitude,
            args.output,
            dtype=args.dtype,
            inputs=[image],
            provenance={"pipeline": "gradient_magnitude", **settings},
            overwrite=args.overwrite,
        )
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ConvflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report.path}: shape {image.shape}, dtype {report.record['output']['dtype']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
