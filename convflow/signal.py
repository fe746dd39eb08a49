"""scipy.signal / numpy conventions over the same engine: full, same and valid results, signal centring.

`convolve` and `correlate` give the answers of `scipy.signal.convolve2d` /
`correlate2d` (every `mode` and `boundary`), of `scipy.signal.convolve` /
`correlate` in N-D, and of `numpy.convolve` / `numpy.correlate` in 1-D,
chunk by chunk, through the engine that runs `convflow.convolve`: the same
methods, the same cost model, the same halos.  `convolve2d` and
`correlate2d` are the same functions under scipy's names.
"""

from __future__ import annotations

import numbers
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow.engine import make_filter, parse_mode, parse_shape, run_shaped, signal_origin
from convflow.errors import ArgumentError, ImageError, KernelError, ModeError

__all__ = ["BOUNDARIES", "convolve", "convolve2d", "correlate", "correlate2d"]

# scipy.signal's boundary names, and the scipy.ndimage mode each one is.
BOUNDARIES = {
    "fill": "constant",
    "pad": "constant",
    "symm": "reflect",
    "symmetric": "reflect",
    "wrap": "wrap",
    "circular": "wrap",
}


def _parse_boundary(boundary: object) -> str:
    """Return the scipy.ndimage mode of a scipy.signal boundary (or of an ndimage mode itself)."""
    if isinstance(boundary, str) and boundary in BOUNDARIES:
        return BOUNDARIES[boundary]
    try:
        return parse_mode(boundary)
    except ModeError as err:
        raise ModeError(
            f"boundary={boundary!r} is not a boundary; use one of {', '.join(BOUNDARIES)} "
            "(scipy.signal's names), or a scipy.ndimage mode such as 'nearest' or 'mirror'"
        ) from err


def _real_array(value: Any, what: str) -> Any:
    """`value` as a numpy array (a dask array stays one); complex input is refused."""
    error = ImageError if what == "in1" else KernelError
    try:
        array = value if isinstance(value, da.Array) else np.asarray(value)
    except (TypeError, ValueError) as err:
        raise error(f"{what} is not a numeric array (rows of unequal length?): {err}") from err
    if array.dtype.kind == "c":
        raise error(
            f"{what} has complex dtype {array.dtype}; convflow.signal takes real inputs only "
            "(scipy.signal.correlate would also conjugate in2): filter the real and imaginary "
            "parts separately"
        )
    return array


def _signal(
    in1: ArrayLike,
    in2: ArrayLike,
    op: str,
    mode: str,
    boundary: str,
    fillvalue: float,
    method: str,
    dtype: DTypeLike | None,
) -> Any:
    """The shared worker of convolve, correlate and correlate2d: check everything, then one engine filter."""
    flip = op == "convolve"
    shape = parse_shape(mode)
    extension = _parse_boundary(boundary)
    if not isinstance(fillvalue, numbers.Real):
        raise ArgumentError(f"fillvalue={fillvalue!r} must be a real number")
    image = _real_array(in1, "in1")
    kernel: Any = in2 if hasattr(in2, "factors") else _real_array(in2, "in2")
    if image.ndim and image.size == 0:
        raise ImageError(f"in1 has shape {image.shape} and holds no values; every axis needs size >= 1")
    swapped = shape == "valid" and _swap_needed(image.shape, np.shape(kernel))
    if swapped:
        # scipy.signal's rule: in 'valid' mode the larger input slides over the smaller.
        small = np.asarray(image)
        big = np.asarray(kernel)
        image = da.from_array(big, chunks=image.chunksize) if isinstance(image, da.Array) else big
        kernel = small
    kernel_shape = np.shape(kernel) if np.ndim(kernel) else ()
    filt = make_filter(
        image.dtype,
        image.ndim,
        kernel,
        flip=flip,
        mode=extension,
        cval=fillvalue,
        origin=signal_origin(kernel_shape, op) if kernel_shape else 0,
        axes=None,
        method=method,
        dtype=dtype,
    )
    result = run_shaped(image, [filt], shape)
    if swapped and not flip:
        # correlate(a, b) is correlate(b, a) reversed on every axis.
        result = result[(slice(None, None, -1),) * result.ndim]
    return result


def _swap_needed(image_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> bool:
    """Whether scipy.signal swaps the inputs in 'valid' mode, or raise where it refuses."""
    if len(kernel_shape) != len(image_shape) or not image_shape:
        return False
    image_fits = all(i >= k for i, k in zip(image_shape, kernel_shape, strict=True))
    kernel_fits = all(k >= i for i, k in zip(image_shape, kernel_shape, strict=True))
    if not (image_fits or kernel_fits):
        raise ArgumentError(
            f"mode='valid' with in1 of shape {image_shape} and in2 of shape {kernel_shape}: "
            "one must be at least as large as the other along every axis (scipy.signal's rule); "
            "use mode='same' or 'full'"
        )
    return not image_fits


def convolve(
    in1: ArrayLike,
    in2: ArrayLike,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0,
    method: str = "auto",
    *,
    dtype: DTypeLike | None = None,
) -> Any:
    """Convolve two arrays as scipy.signal does, chunk by chunk.

    The result is float32 for an `in1` of at most 16 bits (bool, int8,
    uint8, int16, uint16, float16, float32) and float64 otherwise, unless
    `dtype` says otherwise, where scipy.signal would give the common dtype of
    the inputs; integer results are rounded half to even and clipped, never
    wrapped.

    On even kernel axes the ``same`` result is centred as scipy.signal and
    numpy centre it, one sample before `convflow.convolve` (scipy.ndimage):
    ``convolve(range(1, 10), [1, 2, 3, 4], "same")`` begins 4, 10, 20 where
    ``convflow.convolve(..., mode="constant")`` begins 10, 20, 30.

    Parameters
    ----------
    in1 : array_like or dask.array.Array
        The image.  A dask array gives a lazy dask array whose chunks are
        its chunks, grown (``full``) or trimmed (``valid``) at the outer
        edges; anything else gives a numpy array.
    in2 : array_like or convflow.kernels.Kernel
        The kernel, with as many axes as `in1` or fewer: then it runs over
        the last axes and the others are batch axes (an extension of scipy).
    mode : {'full', 'same', 'valid'}, optional
        ``full``: every value the kernel touches, ``m + n - 1`` per axis;
        ``same``: the shape of `in1`, centred on the full result; ``valid``:
        only values that read no boundary, ``m - n + 1`` per axis.  In
        ``valid`` mode a kernel at least as large as `in1` on every axis
        swaps roles with it, as in scipy.signal.
    boundary : {'fill', 'wrap', 'symm'}, optional
        How `in1` extends past its edges: `fillvalue` (``fill``, also
        ``pad``), periodically (``wrap``, ``circular``) or mirrored with the
        edge value repeated (``symm``, ``symmetric``).  Any scipy.ndimage
        mode (``nearest``, ``mirror``...) works as well.
    fillvalue : float, optional
        The value outside the edges for ``fill``.
    method : {'auto', 'direct', 'separable', 'fft'}, optional
        How each chunk is computed, as for `convflow.convolve`.
    dtype : dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The convolution.

    Raises
    ------
    convflow.errors.ArgumentError
        `mode` is not full, same or valid; `fillvalue`, `method` or `dtype`
        is invalid; a ``valid`` result would be empty, or neither input is
        at least as large as the other along every axis.
    convflow.errors.ModeError
        `boundary` is unknown.
    convflow.errors.ImageError, convflow.errors.KernelError
        An input is complex, empty or not numeric, or the kernel has more
        axes than the image.

    See Also
    --------
    correlate : the same without the flip.
    convflow.convolve : scipy.ndimage's convention.
    scipy.signal.convolve2d, scipy.signal.convolve, numpy.convolve :
        the answers this reproduces.

    Notes
    -----
    ``numpy.convolve(a, v, "same")`` returns ``max(len(a), len(v))`` values;
    like scipy.signal, this returns ``len(a)``.  The two agree whenever
    ``len(a) >= len(v)``, and always in ``full`` and ``valid`` mode.

    Examples
    --------
    >>> import numpy as np
    >>> convolve(np.arange(1.0, 10.0), [1.0, 2.0, 3.0, 4.0], "same")[:3]
    array([ 4., 10., 20.])
    >>> convolve(np.arange(1.0, 10.0), [0.2, 0.5, 0.2], "same")
    array([0.9, 1.8, 2.7, 3.6, 4.5, 5.4, 6.3, 7.2, 6.1])
    >>> convolve(np.array([1.0, 2.0, 3.0]), [0.0, 1.0, 0.5])
    array([0. , 1. , 2.5, 4. , 1.5])
    """
    return _signal(in1, in2, "convolve", mode, boundary, fillvalue, method, dtype)


def correlate(
    in1: ArrayLike,
    in2: ArrayLike,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0,
    method: str = "auto",
    *,
    dtype: DTypeLike | None = None,
) -> Any:
    """Cross-correlate two arrays as scipy.signal does, chunk by chunk.

    The result is float32 for an `in1` of at most 16 bits and float64
    otherwise, unless `dtype` says otherwise; see `convolve`.  Inputs must
    be real: scipy.signal.correlate conjugates a complex `in2`, which this
    refuses.

    Parameters
    ----------
    in1 : array_like or dask.array.Array
        The image; a dask array gives a lazy dask array.
    in2 : array_like or convflow.kernels.Kernel
        The template, with as many axes as `in1` or fewer.
    mode : {'full', 'same', 'valid'}, optional
        As for `convolve`.  In ``valid`` mode a template at least as large
        as `in1` on every axis swaps roles with it and the result is
        reversed, as in scipy.signal.
    boundary : {'fill', 'wrap', 'symm'}, optional
        As for `convolve`.
    fillvalue : float, optional
        The value outside the edges for ``fill``.
    method : {'auto', 'direct', 'separable', 'fft'}, optional
        How each chunk is computed.
    dtype : dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The correlation.

    Raises
    ------
    convflow.errors.ArgumentError, convflow.errors.ModeError,
    convflow.errors.ImageError, convflow.errors.KernelError
        As for `convolve`, before anything is computed.

    See Also
    --------
    convolve : the same with the kernel flipped.
    scipy.signal.correlate2d, scipy.signal.correlate, numpy.correlate :
        the answers this reproduces.

    Examples
    --------
    >>> import numpy as np
    >>> correlate(np.array([1.0, 2.0, 3.0]), [0.0, 1.0, 0.5])
    array([0.5, 2. , 3.5, 3. , 0. ])
    >>> correlate(np.arange(4.0).reshape(2, 2), np.ones((2, 2)), "same", boundary="wrap")
    array([[6., 6.],
           [6., 6.]])
    """
    return _signal(in1, in2, "correlate", mode, boundary, fillvalue, method, dtype)


def correlate2d(
    in1: ArrayLike,
    in2: ArrayLike,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: float = 0,
    method: str = "auto",
    *,
    dtype: DTypeLike | None = None,
) -> Any:
    """Cross-correlate two arrays as scipy.signal.correlate2d does, chunk by chunk.

    The same as `correlate` but for one thing that scipy.signal.correlate2d
    does differently from scipy.signal.correlate: on even template axes its
    ``same`` result starts one sample further along the full correlation
    (correlating ``range(1, 10)`` with ``[1, 2, 3, 4]``, correlate's
    ``same`` begins 11, 20, 30 and correlate2d's 20, 30, 40).  Any number
    of axes works, as for `correlate`.

    Parameters
    ----------
    in1 : array_like or dask.array.Array
        The image; a dask array gives a lazy dask array.
    in2 : array_like or convflow.kernels.Kernel
        The template, with as many axes as `in1` or fewer.
    mode : {'full', 'same', 'valid'}, optional
        As for `correlate`.
    boundary : {'fill', 'wrap', 'symm'}, optional
        As for `convolve`.
    fillvalue : float, optional
        The value outside the edges for ``fill``.
    method : {'auto', 'direct', 'separable', 'fft'}, optional
        How each chunk is computed.
    dtype : dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The correlation.

    Raises
    ------
    convflow.errors.ArgumentError, convflow.errors.ModeError,
    convflow.errors.ImageError, convflow.errors.KernelError
        As for `convolve`, before anything is computed.

    See Also
    --------
    correlate : scipy.signal.correlate's centring.
    scipy.signal.correlate2d : the answer this reproduces.

    Examples
    --------
    >>> import numpy as np
    >>> x, k = np.arange(1.0, 10.0)[None], np.array([[1.0, 2.0, 3.0, 4.0]])
    >>> correlate2d(x, k, "same")[0, :3], correlate(x, k, "same")[0, :3]
    (array([20., 30., 40.]), array([11., 20., 30.]))
    """
    return _signal(in1, in2, "correlate2d", mode, boundary, fillvalue, method, dtype)


# scipy's 2-D name for convolution: the same N-D function, as the centring is the same.
convolve2d = convolve
