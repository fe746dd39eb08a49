"""convolve and correlate: check every argument once, then one shared worker."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow import _dtypes, _fused, _halo, _methods, _modes
from convflow.errors import ArgumentError, ImageError, KernelError


@dataclass(frozen=True)
class Filter:
    """A correlation, fully checked and in canonical form, ready for any block."""

    weights: np.ndarray  # float64 correlation weights (already flipped for convolve)
    terms: tuple[_methods.Term, ...] | None
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


def parse_axes(axes: object, ndim: int, kernel_ndim: int) -> tuple[int, ...]:
    """Return sorted, non-negative image axes for a kernel of `kernel_ndim` axes, or raise.

    Examples
    --------
    >>> parse_axes(None, 3, 2)
    (1, 2)
    >>> parse_axes((-3, -1), 3, 2)
    (0, 2)
    """
    if axes is None:
        return tuple(range(ndim - kernel_ndim, ndim))
    given = (axes,) if isinstance(axes, numbers.Integral) else tuple(axes)  # type: ignore[arg-type]
    if not all(isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in given):
        raise ArgumentError(f"axes={axes!r} must be integers, e.g. axes=(1, 2)")
    for a in given:
        if not -ndim <= a < ndim:
            raise ArgumentError(
                f"axes={axes!r}: axis {a} is out of range for an image with {ndim} axes "
                f"(valid: {-ndim} to {ndim - 1})"
            )
    positive = tuple(int(a) % ndim for a in given)
    if len(set(positive)) != len(positive):
        raise ArgumentError(f"axes={axes!r} repeats an axis; give each axis once")
    if list(positive) != sorted(positive):
        raise ArgumentError(f"axes={axes!r} must be increasing; use axes={tuple(sorted(positive))!r}")
    if len(positive) != kernel_ndim:
        raise ArgumentError(
            f"axes={axes!r} names {len(positive)} axes but the kernel has {kernel_ndim}; "
            "give one axis per kernel axis"
        )
    return positive


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
    """Check all arguments of convolve/correlate and return their canonical Filter."""
    compute = _dtypes.compute_dtype(image_dtype)
    result = _dtypes.parse_result_dtype(dtype, compute)
    if image_ndim == 0:
        raise ImageError("image is a scalar; convflow filters arrays with at least one axis")
    weights, factors = parse_kernel(kernel, image_ndim)
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
    corr_origin = parse_origin(origin, weights.shape)
    terms = _methods.separable_terms(weights, factors) if method in ("auto", "separable") else None
    return Filter(weights, terms, kernel_axes, corr_origin, mode, float(cval), method, compute, result)


def _filter(image: ArrayLike, kernel: object, flip: bool, **options: Any) -> Any:
    """The shared worker of convolve and correlate."""
    if not isinstance(image, da.Array):
        image = np.asarray(image)
    filt = make_filter(image.dtype, image.ndim, kernel, flip=flip, **options)
    if image.size == 0:
        return image.astype(filt.result_dtype)
    return _fused.run(image, [filt], filt.compute_dtype, filt.result_dtype)


def correlate(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | tuple[int, ...] = 0,
    axes: tuple[int, ...] | None = None,
    method: str = "auto",
    dtype: DTypeLike | None = None,
) -> Any:
    """Correlate an image with a kernel, chunk by chunk, exactly as scipy does on the whole.

    The result is float32 for images of at most 16 bits (bool, int8, uint8,
    int16, uint16, float16, float32) and float64 otherwise, unless `dtype`
    says otherwise; integer results are rounded half to even and clipped to
    the dtype's range, never wrapped.

    Parameters
    ----------
    image : array_like or dask.array.Array
        The data.  A dask array gives a lazy dask array with the same chunks;
        anything else gives a numpy array.
    kernel : array_like or convflow.kernels.Kernel
        The weights.  With fewer axes than the image, the kernel runs over the
        last ``kernel.ndim`` axes (or `axes`); the other axes are batch axes.
    mode : str, optional
        How the image extends past its edges: any scipy.ndimage mode
        (``reflect``, ``mirror``, ``nearest``, ``wrap``, ``constant``,
        ``grid-wrap``, ``grid-mirror``, ``grid-constant``) or an alias
        (``symm``, ``fill``, ``circular``).
    cval : float, optional
        The value outside the edges for the constant modes.
    origin : int or tuple of int, optional
        Shift of the kernel's centre, one number or one per kernel axis, as
        scipy reads it.
    axes : tuple of int, optional
        The increasing image axes the kernel runs over.
    method : {'auto', 'direct', 'separable', 'fft'}, optional
        How each chunk is computed.  All are exact to the spec's tolerance;
        ``auto`` picks the cheapest by a measured cost model.
    dtype : dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The filtered image, the same shape as `image`.

    Raises
    ------
    convflow.errors.KernelError
        The kernel is empty, has NaN or infinite values, or more axes than the image.
    convflow.errors.ModeError
        `mode` is not a mode; the message lists the valid ones.
    convflow.errors.ArgumentError
        `axes`, `origin`, `method`, `cval` or `dtype` is invalid.
    convflow.errors.MethodError
        ``method='separable'`` with a kernel that is not separable.
    convflow.errors.ImageError
        The image's dtype is not numeric.

    See Also
    --------
    convolve : the same with the kernel flipped.
    scipy.ndimage.correlate : the whole-array answer this reproduces.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> image = da.from_array(np.arange(10, dtype=np.uint8), chunks=4)
    >>> correlate(image, [1.0, 0.0, -1.0]).compute()
    array([-1., -2., -2., -2., -2., -2., -2., -2., -2., -1.], dtype=float32)
    """
    return _filter(
        image, kernel, False, mode=mode, cval=cval, origin=origin, axes=axes, method=method, dtype=dtype
    )


def convolve(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    mode: str = "reflect",
    cval: float = 0.0,
    origin: int | tuple[int, ...] = 0,
    axes: tuple[int, ...] | None = None,
    method: str = "auto",
    dtype: DTypeLike | None = None,
) -> Any:
    """Convolve an image with a kernel, chunk by chunk, exactly as scipy does on the whole.

    The result is float32 for images of at most 16 bits (bool, int8, uint8,
    int16, uint16, float16, float32) and float64 otherwise, unless `dtype`
    says otherwise; integer results are rounded half to even and clipped to
    the dtype's range, never wrapped.

    Convolving with a kernel equals correlating with the kernel flipped on
    every axis (for even sizes scipy also shifts the origin by one so the
    flipped kernel keeps its centre).

    Parameters
    ----------
    image : array_like or dask.array.Array
        The data.  A dask array gives a lazy dask array with the same chunks;
        anything else gives a numpy array.
    kernel : array_like or convflow.kernels.Kernel
        The weights.  With fewer axes than the image, the kernel runs over the
        last ``kernel.ndim`` axes (or `axes`); the other axes are batch axes.
    mode : str, optional
        How the image extends past its edges: any scipy.ndimage mode or an
        alias (``symm``, ``fill``, ``circular``); see `correlate`.
    cval : float, optional
        The value outside the edges for the constant modes.
    origin : int or tuple of int, optional
        Shift of the kernel's centre, one number or one per kernel axis, as
        scipy reads it.
    axes : tuple of int, optional
        The increasing image axes the kernel runs over.
    method : {'auto', 'direct', 'separable', 'fft'}, optional
        How each chunk is computed; ``auto`` picks the cheapest exact one.
    dtype : dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The filtered image, the same shape as `image`.

    Raises
    ------
    convflow.errors.KernelError, convflow.errors.ModeError,
    convflow.errors.ArgumentError, convflow.errors.MethodError,
    convflow.errors.ImageError
        As for `correlate`, before anything is computed.

    See Also
    --------
    correlate : the same without the flip.
    scipy.ndimage.convolve : the whole-array answer this reproduces.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    >>> convolve(x, [1.0, 2.0, 3.0], mode="constant")
    array([0., 1., 2., 3., 0.])
    >>> correlate(x, [3.0, 2.0, 1.0], mode="constant")
    array([0., 1., 2., 3., 0.])
    """
    return _filter(
        image, kernel, True, mode=mode, cval=cval, origin=origin, axes=axes, method=method, dtype=dtype
    )
