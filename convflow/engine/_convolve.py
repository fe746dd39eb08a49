"""convolve and correlate: check every argument once, then one shared worker."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow.engine._filter import make_filter
from convflow.engine._fused import run_filters


def _filter(image: ArrayLike, kernel: object, flip: bool, **options: Any) -> Any:
    """The shared worker of convolve and correlate."""
    if not isinstance(image, da.Array):
        image = np.asarray(image)
    return run_filters(image, [make_filter(image.dtype, image.ndim, kernel, flip=flip, **options)])


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
