"""Gather a folder of TIFF images or stacks into one zarr array with a leading batch axis.

The files matching ``--pattern`` are stacked in sorted order along a new first
axis ``b`` (files must agree in shape and dtype), optionally smoothed with a
Gaussian over the spatial axes only, so files never bleed into each other,
and written chunk by chunk: one file is read per chunk, never the whole
folder. From the repository root::

    python pipelines/tiff_folder_to_zarr.py configs/data/scans out/scans.zarr
    python pipelines/tiff_folder_to_zarr.py configs/data/scans out/scans_smooth.ome.zarr --sigma 1.5

A ``.ome.zarr`` output is an OME-NGFF image that napari and Fiji open. The
output keeps the files' dtype unless ``--dtype`` says otherwise. Exit code 0
on success, 2 on a bad argument, no matching file or an existing output, 1
when writing fails.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import convflow
import convflow.io
from convflow.errors import ConvflowError, OutputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="folder holding the TIFF files")
    parser.add_argument("output", help="zarr to write: .zarr or .ome.zarr; must not exist")
    parser.add_argument("--pattern", default="*.tif", help="which files, as a glob (default *.tif)")
    parser.add_argument("--sigma", type=float, default=0.0, help="Gaussian smoothing (default 0: none)")
    parser.add_argument("--dtype", help="output dtype (default: the files')")
    parser.add_argument(
        "--chunks", type=int, nargs="+", help="output chunks, one per axis (default: one file)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        found = "is a file" if args.folder.exists() else "does not exist"
        parser.error(f"folder {str(args.folder)!r} {found}; give the folder that holds the TIFF files")
    if args.sigma < 0:
        parser.error(f"--sigma {args.sigma}: give 0 (no smoothing) or a positive number")
    if not args.output.rstrip("/").endswith(".zarr"):
        parser.error(f"output {args.output!r}: end the name in .zarr or .ome.zarr")

    # glob.escape: brackets or stars in the folder's own name are not patterns.
    pattern = str(Path(glob.escape(str(args.folder))) / args.pattern)
    try:
        stack = convflow.io.open_input(pattern)
        result = stack.array
        if args.sigma > 0:
            spatial = stack.spatial_axes
            blur = convflow.kernels.get("gaussian", sigma=args.sigma, ndim=len(spatial))
            result = convflow.convolve(result, blur, axes=spatial)
        report = convflow.io.write_output(
            result,
            args.output,
            dtype=args.dtype or stack.dtype,
            chunks=args.chunks,
            inputs=[stack],
            provenance={"pipeline": "tiff_folder_to_zarr", "pattern": args.pattern, "sigma": args.sigma},
            overwrite=args.overwrite,
        )
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ConvflowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report.path}: {len(stack.files)} files, shape {stack.shape}, axes {stack.axes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
