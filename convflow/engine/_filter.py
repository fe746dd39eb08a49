"""Filter: one correlation with every argument checked and put in canonical form.

`make_filter` is the one entrance check of convolve, correlate and every
stack step: it resolves the compute and result dtypes, the kernel's axes,
mode, origin and method, and folds convolve's flip (with scipy's even-size
origin shift) into correlation weights, so nothing downstream knows about
convolution at all.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import DTypeLike

from convflow.engine import _dtypes, _halo, _methods, _modes, _terms
from convflow.engine._axes import parse_axes
from convflow.errors import ArgumentError, ImageError, KernelError


@dataclass(frozen=True)
class Filter:
    """A correlation, fully checked and in canonical form, ready for any block."""

    weights: np.ndarray  # float64 correlation weights (already flipped for convolve)
    terms: tuple[_terms.Term, ...] | None
    axes: tuple[int, ...]
    origin: tuple[int, ...]  # correlation origin per kernel axis
    mode: str
    cval: float
    method: str
    compute_dtype: np.dtype
    result_dtype: np.dtype

    @property
    def halo(self) -> _halo.Halo:
        """(before, after) halo per kernel axis."""
        return _halo.correlation_halo(self.weights.shape, self.origin)


def parse_kernel(kernel: object, image_ndim: int) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """Return the kernel's float64 values and its known separable factors, or raise."""
    factors = getattr(kernel, "factors", None)
    try:
        values = np.asarray(kernel)
        # Casting complex to float64 would only warn and drop the imaginary part.
        weights = None if values.dtype.kind == "c" else np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise KernelError(f"kernel {kernel!r} is not a numeric array: {err}") from err
    if weights is None:
        raise KernelError(
            f"kernel has complex dtype {values.dtype}; weights must be real: "
            "filter with the real and imaginary parts separately"
        )
    if weights.ndim == 0:
        raise KernelError("kernel is a scalar; give at least one axis, e.g. kernel=[1.0]")
    if weights.size == 0:
        raise KernelError(f"kernel has shape {weights.shape} and holds no values; every axis needs size >= 1")
    if weights.ndim > image_ndim:
        raise KernelError(
            f"kernel has {weights.ndim} axes but the image has only {image_ndim}; "
            "use a kernel with at most as many axes as the image"
        )
    if not np.isfinite(weights).all():
        raise KernelError("kernel holds NaN or infinite values; every weight must be finite")
    return weights, factors


def _check_range(weights: np.ndarray, compute: np.dtype) -> None:
    """Refuse weights whose absolute sum the compute dtype cannot hold: every result would overflow."""
    with np.errstate(over="ignore"):
        magnitude = float(np.abs(weights).sum())
    largest = float(np.finfo(compute).max)
    if not magnitude <= largest:
        raise KernelError(
            f"kernel weights sum to {magnitude:.3g} in absolute value, more than {compute} (the compute "
            f"dtype of this image) holds ({largest:.3g}), so results would overflow to inf; scale the "
            "weights down"
        )


def parse_origin(origin: object, kernel_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Return one integer origin per kernel axis, checked against scipy's range."""
    ndim = len(kernel_shape)
    given = (origin,) * ndim if isinstance(origin, numbers.Number) else tuple(origin)  # type: ignore[arg-type]
    if len(given) != ndim:
        raise ArgumentError(
            f"origin={origin!r} has {len(given)} entries; give one number or {ndim}, one per kernel axis"
        )
    if not all(isinstance(o, numbers.Integral) and not isinstance(o, bool) for o in given):
        raise ArgumentError(f"origin={origin!r} must hold integers")
    for o, n in zip(given, kernel_shape, strict=True):
        if not -(n // 2) <= o <= (n - 1) // 2:
            raise ArgumentError(
                f"origin={origin!r}: {o} is out of range for a kernel axis of size {n}; "
                f"it must lie in [{-(n // 2)}, {(n - 1) // 2}]"
            )
    return tuple(int(o) for o in given)


def make_filter(
    image_dtype: DTypeLike,
    image_ndim: int,
    kernel: object,
    *,
    flip: bool,
    mode: object,
    cval: object,
    origin: object,
    axes: object,
    method: object,
    dtype: DTypeLike | None,
) -> Filter:
    """Check all arguments of convolve/correlate and return their canonical Filter.

    The compute dtype is the wider of the policy's for `image_dtype` and a
    float result `dtype` (`convflow.engine.compute_dtype`).
    """
    result = _dtypes.parse_result_dtype(dtype, _dtypes.compute_dtype(image_dtype))
    compute = _dtypes.compute_dtype(image_dtype, result)
    if image_ndim == 0:
        raise ImageError("image is a scalar; convflow filters arrays with at least one axis")
    weights, factors = parse_kernel(kernel, image_ndim)
    given = _terms.given_terms(kernel)
    _check_range(weights, compute)
    kernel_axes = parse_axes(axes, image_ndim, weights.ndim)
    mode = _modes.parse_mode(mode)
    if not isinstance(cval, numbers.Real):
        raise ArgumentError(f"cval={cval!r} must be a real number")
    method = _methods.parse_method(method)
    if flip:
        # scipy's convolve: correlate with the flipped kernel, origin negated,
        # and shifted one more on even axes so the flip keeps its centre.
        user_origin = parse_origin(origin, weights.shape)
        origin = tuple(-o - (1 - n % 2) for o, n in zip(user_origin, weights.shape, strict=True))
        weights = np.flip(weights)
        factors = None if factors is None else tuple(np.flip(np.asarray(f)) for f in factors)
        given = _terms.flip_terms(given)
    corr_origin = parse_origin(origin, weights.shape)
    terms = _terms.separable_terms(weights, factors, given) if method in ("auto", "separable") else None
    _methods.check_method(method, weights, terms)
    return Filter(weights, terms, kernel_axes, corr_origin, mode, float(cval), method, compute, result)
