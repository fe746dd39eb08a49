"""The conventions of scipy.signal and numpy: output shapes, and how they centre even kernels.

scipy.ndimage and scipy.signal agree on every odd kernel axis and differ
on even ones.  Convolving ``range(1, 10)`` with ``[1, 2, 3, 4]``, the full
result is ``1, 4, 10, 20, 30, ...``; scipy.signal and numpy keep the part
centred on it (``4, 10, 20, ...``: from full index ``(n - 1) // 2`` on),
while scipy.ndimage centres the flipped kernel itself (``10, 20, 30, ...``:
one further on).  For correlation scipy.signal.correlate and numpy agree
with scipy.ndimage, but scipy.signal.correlate2d moves the centre back as
for convolution.  So signal centring is only an origin, and
`signal_origin` gives it to `make_filter`.  Nothing here imports dask, so
configs check their keys with these names.
"""

from __future__ import annotations

from convflow.errors import ArgumentError

SHAPES = ("same", "full", "valid")

# The conventions a step can centre by.
CONVENTIONS = ("ndimage", "signal")


def parse_shape(shape: object) -> str:
    """Return `shape` if it is one of SHAPES, else raise ArgumentError.

    Examples
    --------
    >>> parse_shape("valid")
    'valid'
    """
    if shape not in SHAPES:
        raise ArgumentError(f"mode={shape!r} is not an output shape; use one of {', '.join(SHAPES)}")
    return str(shape)


# scipy.signal's functions, and whether each centres an even 'same' result one
# sample before scipy.ndimage's correlation of the (flipped) kernel.
SIGNAL_OPS = {"convolve": True, "correlate": False, "correlate2d": True}


def signal_origin(kernel_shape: tuple[int, ...], op: str) -> tuple[int, ...]:
    """The `make_filter` origin that centres a kernel as scipy.signal's `op` does.

    `op` is ``convolve`` (scipy.signal.convolve, convolve2d, numpy.convolve;
    `make_filter` with ``flip=True``), ``correlate`` (scipy.signal.correlate,
    numpy.correlate: ndimage's own centre) or ``correlate2d``, which centres
    an even axis one sample before correlate does.

    Examples
    --------
    >>> signal_origin((4, 3), "convolve"), signal_origin((4, 3), "correlate")
    ((-1, 0), (0, 0))
    """
    return tuple(-(1 - n % 2) if SIGNAL_OPS[op] else 0 for n in kernel_shape)
