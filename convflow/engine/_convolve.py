"""convolve and correlate: check every argument once, then one shared worker."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow.engine import _dtypes
from convflow.engine._filter import make_filter
from convflow.engine._fused import run_filters
from convflow.errors import ArgumentError


def _filter(
    image: ArrayLike, kernel: object, flip: bool, output: Any, dtype: DTypeLike | None, **options: Any
) -> Any:
    """The shared worker of convolve and correlate."""
    if not isinstance(image, da.Array):
        image = np.asarray(image)
    dtype, fill = parse_output(output, dtype, image)
    result = run_filters(
        image, [make_filter(image.dtype, image.ndim, kernel, flip=flip, dtype=dtype, **options)]
    )
    if fill is None:
        return result
    # Computed whole before the copy, so an `output` that is the image itself is safe.
    fill[...] = result
    return fill


def parse_output(output: Any, dtype: DTypeLike | None, image: Any) -> tuple[DTypeLike, np.ndarray | None]:
    """Return the result dtype that scipy's `output` (or `dtype`) asks for, and the array to fill, if any.

    As scipy.ndimage reads it, `output` is a dtype or, for a numpy image, an
    array of the image's shape that receives the result.

    Examples
    --------
    >>> parse_output("float64", None, np.zeros(3))
    (dtype('float64'), None)
    >>> dtype, fill = parse_output(np.zeros(3, np.float32), None, np.zeros(3))
    >>> dtype, fill.shape
    (dtype('float32'), (3,))
    """
    if output is None:
        return dtype, None
    if dtype is not None:
        keep = (
            "keep output= (the array to fill) and drop dtype="
            if isinstance(output, np.ndarray)
            else f"keep dtype={dtype!r} and drop output= (scipy's name for the same thing)"
        )
        raise ArgumentError(f"output= and dtype={dtype!r} both set the result's dtype; {keep}")
    if isinstance(output, da.Array) or (isinstance(image, da.Array) and isinstance(output, np.ndarray)):
        raise ArgumentError(
            f"output= is an array ({type(output).__name__} of shape {output.shape}), but a dask image "
            "gives a lazy dask result, not one written into an array; give output= a dtype such as "
            "np.float64 and store the result with dask.array.store(result, target)"
        )
    if isinstance(output, np.ndarray):
        if output.shape != image.shape:
            raise ArgumentError(
                f"output= has shape {output.shape} but the image has shape {image.shape}; give an "
                "output array of the image's shape, or a dtype"
            )
        if not output.flags.writeable:
            raise ArgumentError(
                f"output= is a read-only array of shape {output.shape}; give a writeable array, or a dtype"
            )
        return _dtypes.parse_result_dtype(output.dtype, output.dtype, what="output"), output
    if isinstance(output, str | type | np.dtype):
        return _dtypes.parse_result_dtype(output, np.dtype(np.float64), what="output"), None
    raise ArgumentError(
        f"output={output!r} is neither a dtype (e.g. np.float64 or 'float32') nor a numpy array to fill; "
        "give one of those"
    )


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
    output: Any = None,
) -> Any:
    """Correlate an image with a kernel, chunk by chunk, exactly as scipy does on the whole.

    The work happens in float32 for images of at most 16 bits (bool, int8,
    uint8, int16, uint16, float16, float32) and in float64 otherwise, and
    that is the result's dtype unless `dtype` (or scipy's `output`) says
    otherwise.  A float result dtype is computed at least at its own
    precision: the compute dtype is the wider of the two, so
    ``dtype=np.float64`` on a uint8 image computes in float64.  Integer
    results are rounded half to even and clipped to the dtype's range, never
    wrapped (scipy truncates and wraps).

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
        The result's dtype; a float dtype wider than the compute dtype
        widens it.
    output : dtype or numpy.ndarray, optional
        scipy.ndimage's name for the result: a dtype (as `dtype`), or, for a
        numpy image, an array of the image's shape that receives the result
        and is returned, as scipy returns it.  Give `output` or `dtype`, not
        both.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The filtered image, the same shape as `image` (`output` itself when
        it is an array).

    Raises
    ------
    convflow.errors.KernelError
        The kernel is empty, has NaN or infinite values, or more axes than the image.
    convflow.errors.ModeError
        `mode` is not a mode; the message lists the valid ones.
    convflow.errors.ArgumentError
        `axes`, `origin`, `method`, `cval`, `dtype` or `output` is invalid:
        `output` and `dtype` both given, an `output` array of another shape,
        or an `output` array for a dask image.
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
    >>> correlate(image, [0.1, 0.2, 0.7], dtype=np.float64).compute()[:3]  # computed in float64
    array([0.7, 1.6, 2.6])
    """
    return _filter(
        image, kernel, False, output, dtype, mode=mode, cval=cval, origin=origin, axes=axes, method=method
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
    output: Any = None,
) -> Any:
    """Convolve an image with a kernel, chunk by chunk, exactly as scipy does on the whole.

    The work happens in float32 for images of at most 16 bits (bool, int8,
    uint8, int16, uint16, float16, float32) and in float64 otherwise, and
    that is the result's dtype unless `dtype` (or scipy's `output`) says
    otherwise.  A float result dtype is computed at least at its own
    precision: the compute dtype is the wider of the two, so
    ``dtype=np.float64`` on a uint8 image computes in float64.  Integer
    results are rounded half to even and clipped to the dtype's range, never
    wrapped (scipy truncates and wraps).

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
        The result's dtype; a float dtype wider than the compute dtype
        widens it.
    output : dtype or numpy.ndarray, optional
        scipy.ndimage's name for the result: a dtype, or for a numpy image an
        array to fill and return; see `correlate`.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The filtered image, the same shape as `image` (`output` itself when
        it is an array).

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

    scipy's ``output=`` runs unchanged, with a dtype or an array to fill:

    >>> filled = np.zeros(5, dtype=np.float32)
    >>> convolve(x, [1.0, 2.0, 3.0], mode="constant", output=filled) is filled
    True
    >>> filled
    array([0., 1., 2., 3., 0.], dtype=float32)
    """
    return _filter(
        image, kernel, True, output, dtype, mode=mode, cval=cval, origin=origin, axes=axes, method=method
    )
