"""The compute dtype of the spec, and the rounded, saturating cast to a result dtype."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from convflow.errors import ArgumentError, ImageError

# Inputs of at most 16 bits are filtered in float32; wider ones in float64.
_FLOAT32_KINDS = {np.dtype(t) for t in ("bool", "int8", "uint8", "int16", "uint16", "float16", "float32")}
# The widest dtype convflow computes in: scipy's FFT and BLAS stop at float64.
_WIDEST = np.dtype(np.float64)


def compute_dtype(image_dtype: DTypeLike, result_dtype: DTypeLike | None = None) -> np.dtype:
    """Return the dtype convflow computes in for an image of `image_dtype`.

    The policy gives float32 for images of at most 16 bits (bool, int8,
    uint8, int16, uint16, float16, float32) and float64 otherwise.  A float
    `result_dtype` asked for widens it: the compute dtype is the wider of the
    policy's and the result's (at most float64), so ``dtype=np.float64`` on a
    uint8 image is computed in float64, not computed in float32 and cast.  An
    integer result dtype leaves the policy as it is.

    Examples
    --------
    >>> compute_dtype(np.uint8), compute_dtype(np.int32)
    (dtype('float32'), dtype('float64'))
    >>> compute_dtype(np.uint8, np.float64), compute_dtype(np.uint8, np.float16)
    (dtype('float64'), dtype('float32'))
    >>> compute_dtype(np.uint16, np.uint16)
    dtype('float32')
    """
    dtype = np.dtype(image_dtype)
    if dtype.kind not in "biuf":
        fix = (
            "filter the real and imaginary parts separately"
            if dtype.kind == "c"
            else "convert it to a numeric dtype first"
        )
        raise ImageError(
            f"image dtype {dtype} cannot be filtered: convflow takes bool, integer "
            f"or floating-point images; {fix}"
        )
    # Byte order is storage, not kind: big-endian uint16 (zarr v2, TIFF) is uint16.
    native = dtype.newbyteorder("=")
    policy = np.dtype(np.float32) if native in _FLOAT32_KINDS else np.dtype(np.float64)
    if result_dtype is None or np.dtype(result_dtype).kind != "f":
        return policy
    asked = np.dtype(result_dtype).newbyteorder("=")
    return min(np.promote_types(policy, asked), _WIDEST, key=lambda d: d.itemsize)


def parse_result_dtype(dtype: DTypeLike | None, default: np.dtype, what: str = "dtype") -> np.dtype:
    """Return the result dtype: `default` when `dtype` is None, else a checked dtype.

    `what` names the argument in errors (``dtype``, or scipy's ``output``).
    """
    if dtype is None:
        return default
    try:
        result = np.dtype(dtype)
    except TypeError as err:
        raise ArgumentError(
            f"{what}={dtype!r} is not a numpy dtype; use e.g. {what}='float32' or {what}='uint16'"
        ) from err
    if result.kind not in "iuf":
        raise ArgumentError(
            f"{what}={result} cannot hold a filtered result; use an integer or "
            "floating-point dtype such as 'uint16' or 'float32'"
        )
    return result


def cast_result(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast computed values to `dtype`: integers rounded half to even and clipped.

    Examples
    --------
    >>> cast_result(np.array([-3.5, 2.5, 300.0]), np.dtype(np.uint8))
    array([  0,   2, 255], dtype=uint8)
    """
    if dtype.kind in "iu":
        low, high = _float_bounds(dtype, values.dtype)
        rounded = np.rint(values)
        # NaN has no integer value; it becomes 0 rather than numpy's undefined cast.
        np.nan_to_num(rounded, copy=False, nan=0.0)
        info = np.iinfo(dtype)
        # `high` can sit below the integer maximum (2**63 - 1 is no float64):
        # values past it saturate to the maximum itself, not to `high`.
        above = rounded > high if int(high) < info.max else None
        np.clip(rounded, low, high, out=rounded)
        result = rounded.astype(dtype)
        if above is not None:
            result[above] = info.max
        return result
    return values.astype(dtype, copy=False)


def _float_bounds(dtype: np.dtype, float_dtype: np.dtype) -> tuple[float, float]:
    """Return the widest floats of `float_dtype` that cast into integer `dtype` safely."""
    info = np.iinfo(dtype)
    ftype = np.dtype(float_dtype).type
    low, high = ftype(info.min), ftype(info.max)
    # int64's maximum rounds up to 2**63 in float64; step back inside the range.
    while int(high) > info.max:
        high = np.nextafter(high, ftype(0))
    while int(low) < info.min:
        low = np.nextafter(low, ftype(0))
    return low, high
