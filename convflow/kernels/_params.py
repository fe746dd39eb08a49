"""The named kernels' registry, and the checks that put their parameters in canonical form.

Each check names the kernel, the parameter and the value it got, says what
is allowed and gives an example, then returns the canonical value: per-axis
parameters as tuples, axes as non-negative numbers, Python ints and floats.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from convflow.errors import KernelError
from convflow.kernels._kernel import NDIMS, Kernel, Term, check_normalize, normalized, normalizing_sum, outer

# Most weights a library kernel may hold (512 MiB of float64): past this the
# dense array alone would exhaust a worker, long before any chunk is filtered.
MAX_WEIGHTS = 2**26

# name -> (function, one-line description), filled by @named as the kernel modules load.
LIBRARY: dict[str, tuple[Callable[..., Kernel], str]] = {}


def named(description: str) -> Callable[[Callable[..., Kernel]], Callable[..., Kernel]]:
    """Register a kernel function under its own name, with a one-line description."""

    def register(function: Callable[..., Kernel]) -> Callable[..., Kernel]:
        LIBRARY[function.__name__] = (function, description)
        return function

    return register


def make(
    kernel: str,
    params: dict[str, Any],
    values: np.ndarray | None = None,
    factors: Sequence[np.ndarray] | None = None,
    terms: Sequence[Term] | None = None,
) -> Kernel:
    """Build the library Kernel `kernel` from values, factors or terms, normalized if params ask."""
    vectors = None if factors is None else tuple(np.asarray(f, dtype=np.float64) for f in factors)
    if values is None and terms is not None:
        values = sum_terms(terms)
    if values is None:
        values = outer(vectors or ())
    with np.errstate(over="ignore"):
        magnitude = float(np.abs(values).sum())
    if not math.isfinite(magnitude):
        given = ", ".join(f"{p}={params[p]!r}" for p in params if p not in ("ndim", "normalize"))
        raise KernelError(
            f"{kernel} kernel got {given}: its weights overflow (their absolute sum is {magnitude}); "
            "use smaller values"
        )
    if params["normalize"]:
        total = normalizing_sum(f"{kernel} kernel", values)
        values, vectors = normalized(f"{kernel} kernel", values, vectors)
        if terms is not None:
            terms = [Term(t.coef / total, t.vectors) for t in terms]
    return Kernel(
        values,
        vectors,
        name=kernel,
        description=LIBRARY[kernel][1],
        params=params,
        terms=None if terms is None else tuple(terms),
    )


def sum_terms(terms: Sequence[Term]) -> np.ndarray:
    """The dense weights of a sum of separable terms.

    Examples
    --------
    >>> delta, ones = np.array([0.0, 1.0, 0.0]), np.ones(3)
    >>> sum_terms([Term(2.0, (delta,)), Term(-1.0, (ones,))])
    array([-1.,  1., -1.])
    """
    total = np.zeros(tuple(v.size for v in terms[0].vectors))
    for term in terms:
        total += term.coef * outer(term.vectors)
    return total


def delta(size: int, index: int | None = None) -> np.ndarray:
    """A vector of `size` zeros with a 1 at `index` (default: the centre).

    Examples
    --------
    >>> delta(5)
    array([0., 0., 1., 0., 0.])
    """
    vector = np.zeros(size)
    vector[size // 2 if index is None else index] = 1.0
    return vector


def is_int(value: object) -> bool:
    """Whether `value` is an integer (numpy's included), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_real(value: object) -> bool:
    """Whether `value` is a real number (numpy's included), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def as_sequence(value: object) -> tuple[Any, ...] | None:
    """`value` as a tuple when it is a list, tuple or 1-D array; None for anything else."""
    if isinstance(value, list | tuple):
        return tuple(value)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return tuple(value.tolist())
    return None


def check_ndim(kernel: str, ndim: object, source: str = "") -> int:
    """Return `ndim` as an int in 1..3, or raise."""
    if isinstance(ndim, numbers.Integral) and is_int(ndim) and int(ndim) in NDIMS:
        return int(ndim)
    raise KernelError(f"{kernel} kernel got ndim={ndim!r}{source}; ndim must be 1, 2 or 3")


def common(kernel: str, ndim: object, normalize: object) -> tuple[int, bool]:
    """Check the two parameters every kernel takes."""
    return check_ndim(kernel, ndim), check_normalize(f"{kernel} kernel", normalize)


def resolve_ndim(kernel: str, ndim: object, **per_axis: object) -> int:
    """Return ndim: as given, else the length of the first per-axis sequence, else 2.

    Every per-axis parameter given as a sequence must have ndim entries.

    Examples
    --------
    >>> resolve_ndim("gaussian", None, sigma=1.0, order=(0, 1, 0))
    3
    >>> resolve_ndim("gaussian", None, sigma=1.0)
    2
    """
    lengths = {}
    for param, value in per_axis.items():
        entries = as_sequence(value)
        if entries is None:
            continue
        if not entries:
            raise KernelError(f"{kernel} kernel got {param}={value!r}; give one number or one per axis")
        lengths[param] = len(entries)
    source = ""
    if ndim is None:
        if lengths:
            param, ndim = next(iter(lengths.items()))
            source = f" (the length of {param})"
        else:
            ndim = 2
    ndim = check_ndim(kernel, ndim, source)
    for param, n in lengths.items():
        if n != ndim:
            raise KernelError(
                f"{kernel} kernel got {param}={per_axis[param]!r} ({n} values) for ndim={ndim}{source}; "
                f"give one {param} per axis ({ndim} values) or a single number"
            )
    return ndim


def per_axis(value: object, ndim: int) -> tuple[Any, ...]:
    """A per-axis parameter as ndim entries (a single value repeats)."""
    entries = as_sequence(value)
    return entries if entries is not None else (value,) * ndim


def positive_floats(kernel: str, param: str, value: object, ndim: int, example: str) -> tuple[float, ...]:
    """One positive finite float per axis, or raise."""
    entries = per_axis(value, ndim)
    if not all(is_real(v) and math.isfinite(v) and v > 0 for v in entries):
        raise KernelError(
            f"{kernel} kernel got {param}={value!r}; every {param} must be a positive number, {example}"
        )
    return tuple(float(v) for v in entries)


def ints(
    kernel: str, param: str, value: object, ndim: int, minimum: int | None, rule: str
) -> tuple[int, ...]:
    """One integer per axis, at least `minimum`, or raise with `rule`."""
    entries = per_axis(value, ndim)
    if not all(is_int(v) and (minimum is None or v >= minimum) for v in entries):
        raise KernelError(f"{kernel} kernel got {param}={value!r}; {rule}")
    return tuple(int(v) for v in entries)


def positive_float(kernel: str, param: str, value: object, rule: str) -> float:
    """A positive finite float, or raise with `rule`."""
    if isinstance(value, numbers.Real) and is_real(value) and math.isfinite(value) and float(value) > 0:
        return float(value)
    raise KernelError(f"{kernel} kernel got {param}={value!r}; {rule}")


def check_axis(kernel: str, axis: object, ndim: int) -> int:
    """Return `axis` as a non-negative axis number of an ndim-axis kernel, or raise."""
    if isinstance(axis, numbers.Integral) and is_int(axis) and -ndim <= int(axis) < ndim:
        return int(axis) % ndim
    raise KernelError(
        f"{kernel} kernel got axis={axis!r} for ndim={ndim}; axis is the derivative axis, "
        f"an integer from {-ndim} to {ndim - 1}, e.g. axis=-1 for the last axis"
    )


def check_size(kernel: str, params: Mapping[str, object], shape: tuple[int, ...]) -> None:
    """Refuse a kernel too large to build, naming the parameters that made it so."""
    count = math.prod(shape)
    if count > MAX_WEIGHTS:
        given = ", ".join(f"{p}={params[p]!r}" for p in params if p not in ("ndim", "normalize"))
        raise KernelError(
            f"{kernel} kernel got {given}: its shape {shape} holds {count:,} weights, more than "
            f"the limit of {MAX_WEIGHTS:,}; use smaller values"
        )
