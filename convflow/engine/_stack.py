"""Kernel stacks: a sequence of steps fused into one halo pass, and combine ops."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow.engine import _dtypes
from convflow.engine._filter import make_filter
from convflow.engine._fused import run_filters
from convflow.engine._ops import COMBINE_OPS, ONE_SOURCE_OPS, OPS
from convflow.errors import ArgumentError


@dataclass(frozen=True)
class Step:
    """One step of a kernel stack: a kernel and how to apply it.

    Parameters
    ----------
    kernel : array_like or convflow.kernels.Kernel
        The weights.
    op : {'convolve', 'correlate'}, optional
        Convolve (the kernel flipped) or correlate.
    mode, cval, origin, axes, method
        As for `convflow.convolve`.

    Examples
    --------
    >>> Step([1.0, 2.0, 1.0], mode="nearest")
    Step(kernel=[1.0, 2.0, 1.0], op='convolve', mode='nearest', cval=0.0, origin=0, axes=None, method='auto')
    """

    kernel: Any
    op: str = "convolve"
    mode: str = "reflect"
    cval: float = 0.0
    origin: int | tuple[int, ...] = 0
    axes: tuple[int, ...] | None = None
    method: str = "auto"


def apply_stack(image: ArrayLike, steps: Sequence[Step], *, dtype: DTypeLike | None = None) -> Any:
    """Apply a stack of steps in order, fused into one halo pass where exact.

    The result equals applying each step one after another with
    scipy.ndimage on the whole array, each with its own mode, at every
    boundary.  Every step computes in one compute dtype, and intermediates
    are kept in it: float32 for inputs of at most 16 bits, float64
    otherwise, or the wider of that and a float `dtype` asked for
    (``dtype=np.float64`` computes every step of a uint8 image in float64).
    It is also the result's dtype unless `dtype` says otherwise.

    Parameters
    ----------
    image : array_like or dask.array.Array
        The data.  A dask array gives a lazy dask array with the same chunks.
    steps : sequence of Step
        The steps, applied first to last.
    dtype : dtype, optional
        The result's dtype; integers are rounded half to even and clipped.
        A float dtype wider than the compute dtype widens it for every step.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        The filtered image.

    Raises
    ------
    convflow.errors.ArgumentError
        An empty stack, or a step that is not a Step or has an unknown op.
    convflow.errors.ConvflowError
        Any error `convflow.convolve` raises for a step's arguments, before
        anything is computed.

    Notes
    -----
    Each block borrows the summed halo of all steps once.  After each step
    the part of the block outside the volume is rewritten by the next step's
    mode, so constant modes and asymmetric kernels stay exact at the edges.
    A wrap step after a step of another mode needs values from the far side
    of the volume, so it starts a second pass.

    Examples
    --------
    >>> import numpy as np, scipy.ndimage as ndi
    >>> x = np.arange(8.0)
    >>> box, diff = [1.0, 1.0, 1.0], [1.0, 0.0, -1.0]
    >>> steps = [Step(box, mode="constant"), Step(diff, op="correlate", mode="nearest")]
    >>> expected = ndi.correlate(ndi.convolve(x, box, mode="constant"), diff, mode="nearest")
    >>> bool(np.allclose(apply_stack(x, steps), expected))
    True
    """
    if not isinstance(image, da.Array):
        image = np.asarray(image)
    return run_filters(image, _stack_filters(image, steps, dtype))


def _stack_filters(image: Any, steps: Sequence[Step], dtype: DTypeLike | None) -> list:
    """Check every step before anything runs, and return their Filters."""
    if isinstance(steps, Step) or not len(steps):
        raise ArgumentError("steps must be a non-empty sequence of convflow.Step, e.g. [Step(kernel)]")
    # Every step computes in the stack's one compute dtype, widened by a float result dtype.
    result = _dtypes.parse_result_dtype(dtype, _dtypes.compute_dtype(image.dtype))
    compute = _dtypes.compute_dtype(image.dtype, result)
    filters = []
    for index, step in enumerate(steps):
        if not isinstance(step, Step):
            raise ArgumentError(f"steps[{index}] is {step!r}; every step must be a convflow.Step")
        if step.op not in OPS:
            raise ArgumentError(f"steps[{index}].op={step.op!r} is not an op; use 'convolve' or 'correlate'")
        filters.append(
            make_filter(
                image.dtype,
                image.ndim,
                step.kernel,
                flip=step.op == "convolve",
                mode=step.mode,
                cval=step.cval,
                origin=step.origin,
                axes=step.axes,
                method=step.method,
                dtype=result if index == len(steps) - 1 else compute,
            )
        )
    return filters


def combine(
    op: str,
    *images: Any,
    factor: float | None = None,
    min: float | None = None,
    max: float | None = None,
    dtype: DTypeLike | None = None,
) -> Any:
    """Combine images of the same shape voxel by voxel.

    The ops difference-of-Gaussians, unsharp masking and gradient magnitude
    need: ``add``, ``subtract`` (the first minus the rest) and ``multiply``
    of two or more images; ``magnitude`` (the square root of the sum of
    squares) of one or more; ``abs``, ``scale`` (by `factor`) and ``clip``
    (to `min`, `max`; either may be omitted) of exactly one.  The work
    happens in the common compute dtype of the inputs (float32 when all have
    at most 16 bits), widened by a float `dtype` asked for, as for
    `convflow.convolve`; that is also the result's dtype unless `dtype` says
    otherwise.

    Parameters
    ----------
    op : str
        One of ``add, subtract, multiply, magnitude, abs, scale, clip``.
    *images : array_like or dask.array.Array
        The inputs, all of the same shape.
    factor : float, optional
        For ``scale``.
    min, max : float, optional
        For ``clip``.
    dtype : dtype, optional
        The result's dtype; integers are rounded half to even and clipped.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Lazy when any input is a dask array.

    Raises
    ------
    convflow.errors.ArgumentError
        Unknown op, wrong number of images, shapes that differ, a missing
        or needless parameter, or a `dtype` that cannot hold the result.

    Examples
    --------
    >>> combine("magnitude", np.array([3.0]), np.array([4.0]))
    array([5.])
    >>> combine("clip", np.array([-1.0, 0.5, 2.0]), min=0.0, max=1.0)
    array([0. , 0.5, 1. ])
    >>> combine("add", np.array([250], np.uint8), np.array([10], np.uint8), dtype=np.uint8)
    array([255], dtype=uint8)
    """
    if op not in COMBINE_OPS:
        raise ArgumentError(f"combine op {op!r} is unknown; use one of {', '.join(COMBINE_OPS)}")
    if not images:
        raise ArgumentError(f"combine {op!r} got no images")
    if op in ONE_SOURCE_OPS and len(images) != 1:
        raise ArgumentError(f"combine {op!r} takes exactly one image, got {len(images)}")
    if op in ("add", "subtract", "multiply") and len(images) < 2:
        raise ArgumentError(f"combine {op!r} takes two or more images, got {len(images)}")
    arrays = [im if isinstance(im, da.Array) else np.asarray(im) for im in images]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ArgumentError(f"combine {op!r} needs images of one shape, got shapes {sorted(shapes)}")
    given = {"factor": factor, "min": min, "max": max}
    wanted = {"scale": {"factor"}, "clip": {"min", "max"}}.get(op, set())
    for name, value in given.items():
        if value is not None and name not in wanted:
            raise ArgumentError(f"combine {op!r} takes no {name!r} (got {name}={value!r})")
        if value is not None and not isinstance(value, numbers.Real):
            raise ArgumentError(f"combine {op!r}: {name}={value!r} must be a real number")
    if op == "scale" and factor is None:
        raise ArgumentError("combine 'scale' needs factor=, e.g. factor=0.5")
    if op == "clip" and min is None and max is None:
        raise ArgumentError("combine 'clip' needs min= or max= (or both)")
    policy = np.result_type(*(_dtypes.compute_dtype(a.dtype) for a in arrays))
    result = _dtypes.parse_result_dtype(dtype, policy)
    compute = np.result_type(*(_dtypes.compute_dtype(a.dtype, result) for a in arrays))
    combined = _combine(op, [a.astype(compute, copy=False) for a in arrays], compute, factor, min, max)
    if result == compute:
        return combined
    if isinstance(combined, da.Array):
        return combined.map_blocks(_dtypes.cast_result, result, dtype=result)
    return _dtypes.cast_result(combined, result)


def _combine(
    op: str, arrays: list[Any], dtype: np.dtype, factor: float | None, min: float | None, max: float | None
) -> Any:
    """The checked op of `combine` on arrays already in the compute `dtype`."""
    if op == "add":
        return functools.reduce(lambda x, y: x + y, arrays)
    if op == "subtract":
        return functools.reduce(lambda x, y: x - y, arrays)
    if op == "multiply":
        return functools.reduce(lambda x, y: x * y, arrays)
    if op == "magnitude":
        squares = functools.reduce(lambda x, y: x + y, [a * a for a in arrays])
        return np.sqrt(squares)  # a ufunc: lazy for dask arrays, too
    (image,) = arrays
    if op == "abs":
        return abs(image)
    if op == "scale":
        return image * dtype.type(factor)
    return image.clip(min, max)
