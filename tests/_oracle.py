"""The oracle: scipy.ndimage on the whole float64 array, and one way to compare against it.

Everything here is written from SPEC.md section 2, not from convflow's own
tables, so a wrong entry in `_modes` or `_dtypes` cannot hide itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import scipy.ndimage as ndi
from numpy.typing import ArrayLike, DTypeLike

import convflow

# SPEC section 2: the scipy.signal names and the scipy mode each one means.
SPEC_ALIASES = {"symm": "reflect", "fill": "constant", "circular": "wrap"}

# np.pad's name for the extension each scipy.ndimage filter mode makes.
NUMPY_PAD = {
    "reflect": "symmetric",
    "grid-mirror": "symmetric",
    "mirror": "reflect",
    "nearest": "edge",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}

# SPEC section 2: the compute dtype (the default result dtype) of each input dtype.
SPEC_COMPUTE_DTYPE = {
    **dict.fromkeys(("bool", "int8", "uint8", "int16", "uint16", "float16", "float32"), np.float32),
    **dict.fromkeys(("int32", "uint32", "int64", "uint64", "float64"), np.float64),
}

# SPEC section 2: |err| <= TOLERANCE[compute dtype] * sum|k| * max(|x|, |cval|).
TOLERANCE = {np.dtype(np.float64): 1e-9, np.dtype(np.float32): 1e-5}

OPS = ("convolve", "correlate")

# Blocks listed in a failure message; more only repeat the story.
_BLOCKS_SHOWN = 4


class ComputedTooEarly(Exception):
    """A block of an `exploding` array (see conftest.py) was computed."""


def spec_compute_dtype(image_dtype: DTypeLike, result_dtype: DTypeLike | None = None) -> np.dtype:
    """The compute dtype SPEC gives an image of `image_dtype` and a result of `result_dtype`.

    Section 2's table, widened as section 6 asks (issue #13): a float result
    dtype is computed at least at its own precision (float64 at most).
    """
    policy = np.dtype(SPEC_COMPUTE_DTYPE[np.dtype(image_dtype).name])
    if result_dtype is None:
        return policy
    asked = np.dtype(result_dtype)
    if asked.kind == "f" and asked.itemsize > policy.itemsize:
        return np.dtype(np.float64)
    return policy


def kernel_axes(image_ndim: int, kernel_ndim: int, axes: int | tuple[int, ...] | None) -> tuple[int, ...]:
    """The image axes a kernel runs over: `axes`, or the last `kernel_ndim` axes."""
    if axes is None:
        return tuple(range(image_ndim - kernel_ndim, image_ndim))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(a % image_ndim for a in axes)


def scipy_reference(
    op: str,
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | tuple[int, ...] = 0,
    axes: tuple[int, ...] | None = None,
) -> np.ndarray:
    """scipy.ndimage.`op` on the whole image in float64: the answer convflow must give."""
    x = np.asarray(image, dtype=np.float64)
    k = np.asarray(kernel, dtype=np.float64)
    mode = SPEC_ALIASES.get(mode, mode)
    axes = kernel_axes(x.ndim, k.ndim, axes)
    function: Callable[..., np.ndarray] = getattr(ndi, op)
    reach = [n - 1 for n in k.shape]
    if mode in ("reflect", "grid-mirror") and any(
        r >= 4 * x.shape[a] for r, a in zip(reach, axes, strict=True)
    ):
        # scipy 1.17's N-D filters (NI_InitFilterOffsets) read out of bounds
        # in reflect mode at positions 2 * m * size before the start, m >= 2:
        # ndi.correlate(np.arange(2.0) + 1, np.eye(9)[0], origin=4) returns
        # garbage where it should return 1.0.  correlate1d (NI_ExtendLine) is
        # right, and so is np.pad's "symmetric", which is scipy's reflect: pad
        # past every read, filter, crop.  tests/engine/test_modes.py checks this
        # against correlate1d.
        pad = [(0, 0)] * x.ndim
        for r, a in zip(reach, axes, strict=True):
            pad[a] = (r, r)
        padded = np.pad(x, pad, mode="symmetric")
        full = function(padded, k, mode="constant", cval=0.0, origin=origin, axes=axes)
        return full[
            tuple(slice(before, before + size) for (before, _), size in zip(pad, x.shape, strict=True))
        ]
    return function(x, k, mode=mode, cval=cval, origin=origin, axes=axes)


def _saturate(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """SPEC's integer cast, in exact Python integers: rounded half to even, clipped; NaN -> 0."""
    info = np.iinfo(dtype)

    def cast(value: float) -> int:
        if np.isnan(value):
            return 0
        if np.isinf(value):
            return info.max if value > 0 else info.min
        return min(max(int(np.rint(value)), info.min), info.max)

    return np.array([cast(v) for v in values.ravel().tolist()], dtype=object).reshape(values.shape)


def _block_slices(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Every block index of `chunks` with the slices it covers."""
    edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    blocks = []
    for index in np.ndindex(*(len(c) for c in chunks)):
        slices = tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index, strict=True))
        blocks.append((index, slices))
    return blocks


def _compare(result: np.ndarray, expected: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-value excess over the allowed error (<= 0 is fine), and the error itself."""
    dtype = result.dtype
    if dtype.kind in "iu":
        # Rounding and clipping are monotone: the result must lie between the
        # casts of the lowest and highest values the tolerance allows.
        low = _saturate(expected - bound, dtype)
        high = _saturate(expected + bound, dtype)
        exact = _saturate(expected, dtype)
        got = result.astype(object)
        error = np.abs(got - exact).astype(np.float64)
        excess = np.maximum(low - got, got - high).astype(np.float64)
        return excess, error
    finite = np.isfinite(expected)
    # A float result narrower than float64 also rounds the final value.
    allowed = bound + np.abs(np.where(finite, expected, 0.0)) * np.finfo(dtype).eps
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(finite, np.abs(result.astype(np.float64) - expected), 0.0)
    excess = error - allowed
    # Non-finite values must match exactly: NaN where scipy has NaN, inf of the same sign.
    same = (np.isnan(result) & np.isnan(expected)) | (result == expected)
    mismatch = ~finite & ~same | finite & ~np.isfinite(result)
    excess = np.where(mismatch, np.inf, excess)
    error = np.where(mismatch, np.inf, error)
    return excess, error


def assert_matches_scipy(
    result: Any,
    expected: np.ndarray,
    *,
    kernel: ArrayLike,
    image: ArrayLike,
    cval: float,
    compute_dtype: DTypeLike,
    chunks: tuple[tuple[int, ...], ...] | None = None,
    dtype: DTypeLike | None = None,
) -> np.ndarray:
    """Assert a convflow result equals scipy's float64 `expected` within the spec's tolerance.

    A dask `image` must give a dask result with `chunks` (default: the
    image's chunks); anything else must give numpy.  The result's dtype must
    be `dtype` (default: `compute_dtype`).  Values may differ by at most
    ``tol * sum|k| * max(|x|, |cval|)``, tol from the compute dtype, and an
    integer result must be a rounded, saturated cast of a value within that.
    A failure names the blocks that differ.  Returns the computed result.
    """
    compute_dtype = np.dtype(compute_dtype)
    dtype = compute_dtype if dtype is None else np.dtype(dtype)
    if isinstance(image, da.Array):
        assert isinstance(result, da.Array), f"a dask image gave {type(result).__name__}, not a dask array"
        want = image.chunks if chunks is None else chunks
        assert result.chunks == want, f"result chunks {result.chunks} differ from {want}"
        block_chunks = result.chunks
        result = result.compute(scheduler="synchronous")
        image = image.compute(scheduler="synchronous")
    else:
        assert type(result) is np.ndarray, f"a numpy image gave {type(result).__name__}, not numpy"
        block_chunks = chunks or tuple((n,) for n in result.shape)
    assert isinstance(result, np.ndarray)
    assert result.dtype == dtype, f"result dtype {result.dtype}, expected {dtype}"
    assert result.shape == expected.shape, f"result shape {result.shape}, expected {expected.shape}"

    x = np.abs(np.asarray(image, dtype=np.float64))
    largest = max(float(x[np.isfinite(x)].max(initial=0.0)), abs(cval) if np.isfinite(cval) else 0.0)
    scale = float(np.abs(np.asarray(kernel, dtype=np.float64)).sum()) * largest
    tol = TOLERANCE[compute_dtype]
    bound = tol * scale
    excess, error = _compare(result, expected, bound)
    if (excess <= 0).all():
        return result

    lines = []
    for index, slices in _block_slices(block_chunks):
        block_excess = excess[slices]
        if (block_excess <= 0).all():
            continue
        worst = np.unravel_index(np.argmax(block_excess), block_excess.shape)
        at = tuple(int(s.start + w) for s, w in zip(slices, worst, strict=True))
        span = ", ".join(f"{s.start}:{s.stop}" for s in slices)
        lines.append(
            f"block {index} [{span}]: {int((block_excess > 0).sum())} of {block_excess.size} values off, "
            f"max |err| {error[slices].max():.3g} at {at}: "
            f"got {result[at].item()!r}, scipy {expected[at].item()!r}"
        )
    shown = "\n  ".join(lines[:_BLOCKS_SHOWN])
    more = f"\n  ... and {len(lines) - _BLOCKS_SHOWN} more blocks" if len(lines) > _BLOCKS_SHOWN else ""
    raise AssertionError(
        f"{len(lines)} block(s) differ from scipy by more than {tol:g} * sum|k| * max(|x|, |cval|) "
        f"= {bound:.3g}:\n  {shown}{more}"
    )


def assert_filter_matches_scipy(
    op: str,
    image: np.ndarray,
    kernel: ArrayLike,
    *,
    chunks: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | tuple[int, ...] = 0,
    axes: tuple[int, ...] | None = None,
    method: str = "auto",
    dtype: DTypeLike | None = None,
) -> np.ndarray:
    """Run convflow.`op` (on dask blocks of `chunks`, or numpy when None) and check it against scipy.

    Also checks that the input image was not modified.  Returns the computed result.
    """
    before = image.copy()
    source = image if chunks is None else da.from_array(image, chunks=chunks)
    options = {"mode": mode, "cval": cval, "origin": origin, "axes": axes, "method": method, "dtype": dtype}
    result = getattr(convflow, op)(source, kernel, **options)
    expected = scipy_reference(op, image, kernel, mode=mode, cval=cval, origin=origin, axes=axes)
    computed = assert_matches_scipy(
        result,
        expected,
        kernel=kernel,
        image=source,
        cval=cval,
        compute_dtype=spec_compute_dtype(image.dtype, dtype),
        dtype=dtype,
    )
    np.testing.assert_array_equal(image, before, err_msg="convflow modified its input")
    return computed
