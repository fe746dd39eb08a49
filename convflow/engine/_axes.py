"""Which image axes a kernel runs over: axis numbers checked, and the letters that name spatial axes."""

from __future__ import annotations

import numbers

from convflow.errors import ArgumentError

# Axis letters (configs, files) that name spatial axes; any other letter is a batch axis.
SPATIAL = "zyx"


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
