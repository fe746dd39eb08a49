"""Kernels: the named library, custom arrays and kernel files, as frozen `Kernel` objects.

A `Kernel` is an array of float64 weights with a name, a one-line
description and the parameters that made it, so a result can say exactly
how it was filtered.  Get one by name (`get`), call a named kernel's
function (`gaussian`, `sobel`, ...), build one from numbers (`from_array`,
`from_factors`) or read one from a file (`load`).  Any of them goes
wherever convflow takes a kernel.

Every named kernel takes ``ndim`` (1, 2 or 3; default 2, or the length of
a per-axis parameter) and ``normalize`` (scale the weights to sum 1; an
error on weights that sum to zero).  Separable kernels carry their 1-D
`Kernel.factors`, so convflow can filter one axis at a time; sums of
separable parts (``log``, ``unsharp``, ``dog``, ``laplacian``...) carry
their `Kernel.terms`, which the engine runs as 1-D passes too.

Orientation
-----------
Each kernel is stored in the orientation its documentation names:

* ``gaussian`` (derivatives included), ``log``, ``unsharp``, ``dog``, ``shift`` and
  the symmetric kernels give their documented result with `convolve`:
  ``convolve(x, gaussian(sigma))`` is ``scipy.ndimage.gaussian_filter(x,
  sigma)``, and ``convolve(x, shift(offset=d))`` is ``np.roll(x, d)``.
* ``sobel``, ``prewitt`` and ``scharr`` follow ``scipy.ndimage.sobel``,
  which *correlates*: ``correlate(x, sobel(axis=a))`` is
  ``scipy.ndimage.sobel(x, axis=a)``, positive where values increase along
  ``a``.  `convolve` gives the negative.

Convolving with a kernel equals correlating with the kernel flipped on
every axis (`Kernel.flipped`), which is why the two disagree on
antisymmetric kernels such as ``sobel``:

>>> import numpy as np
>>> from convflow import convolve, correlate
>>> x = np.array([0.0, 1.0, 4.0, 9.0, 16.0])
>>> k = sobel(ndim=1)
>>> k.values
array([-1.,  0.,  1.])
>>> correlate(x, k)
array([ 1.,  4.,  8., 12.,  7.])
>>> convolve(x, k)
array([ -1.,  -4.,  -8., -12.,  -7.])
>>> correlate(x, k.flipped())
array([ -1.,  -4.,  -8., -12.,  -7.])
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from convflow.errors import KernelError
from convflow.kernels._files import FILE_SUFFIXES, load
from convflow.kernels._kernel import Kernel, Term, from_array, from_factors
from convflow.kernels._params import LIBRARY, MAX_WEIGHTS
from convflow.kernels._smooth import box, dog, gaussian, identity, log, shift, unsharp
from convflow.kernels._stencils import (
    edge1,
    edge2,
    edge3,
    emboss,
    laplacian,
    prewitt,
    scharr,
    sharpen,
    sharpen2,
    sobel,
)

__all__ = [
    "FILE_SUFFIXES",
    "MAX_WEIGHTS",
    "Kernel",
    "Term",
    "box",
    "describe",
    "dog",
    "edge1",
    "edge2",
    "edge3",
    "emboss",
    "from_array",
    "from_factors",
    "gaussian",
    "get",
    "identity",
    "laplacian",
    "load",
    "log",
    "names",
    "prewitt",
    "scharr",
    "sharpen",
    "sharpen2",
    "shift",
    "signature",
    "sobel",
    "unsharp",
]

# Examples for the parameters a kernel cannot do without.
_REQUIRED_EXAMPLES = {
    "sigma": "sigma=1.5",
    "sigma1": "sigma1=1.0",
    "sigma2": "sigma2=2.0",
    "offset": "offset=(0, 1)",
}


def names() -> tuple[str, ...]:
    """Return the names of the library's kernels, sorted.

    Returns
    -------
    tuple of str
        Every name `get` accepts.

    Examples
    --------
    >>> names()[:4]
    ('box', 'dog', 'edge1', 'edge2')
    >>> "gaussian" in names()
    True
    """
    return tuple(sorted(LIBRARY))


def describe() -> tuple[tuple[str, str], ...]:
    """Return ``(name, one-line description)`` for every library kernel, sorted by name.

    Returns
    -------
    tuple of (str, str)
        What ``convflow kernels`` lists; `signature` gives each kernel's
        parameters.

    Examples
    --------
    >>> dict(describe())["unsharp"]
    'unsharp mask: identity + amount * (identity - gaussian)'
    """
    return tuple((name, LIBRARY[name][1]) for name in names())


def signature(name: str) -> str:
    """Return the parameters a library kernel takes, with their defaults, as one line.

    Parameters
    ----------
    name : str
        A name from `names`.

    Returns
    -------
    str
        ``param=default`` for optional parameters, the bare name for
        required ones.

    Raises
    ------
    convflow.errors.KernelError
        `name` is not a library kernel; the message suggests the closest.

    Examples
    --------
    >>> signature("gaussian")
    'sigma, truncate=4.0, order=0, ndim=None, normalize=False'
    """
    parameters = inspect.signature(_lookup(name)).parameters.values()
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in parameters)


def _lookup(name: object) -> Callable[..., Kernel]:
    """The library function called `name`, or a KernelError suggesting the closest name."""
    if isinstance(name, str) and name in LIBRARY:
        return LIBRARY[name][0]
    hint = difflib.get_close_matches(str(name), names(), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise KernelError(f"no kernel named {name!r}.{did_you_mean} Known kernels: {', '.join(names())}")


def get(name: str, **params: Any) -> Kernel:
    """Return the library kernel called `name`, made with `params`.

    Parameters
    ----------
    name : str
        One of `names`: ``box``, ``dog``, ``edge1``, ``edge2``, ``edge3``,
        ``emboss``, ``gaussian``, ``identity``, ``laplacian``, ``log``, ``prewitt``,
        ``scharr``, ``sharpen``, ``sharpen2``, ``shift``, ``sobel``,
        ``unsharp``.
    **params
        The kernel's parameters, as its function takes them (`signature`
        lists them).  Every kernel takes ``ndim`` and ``normalize``.

    Returns
    -------
    Kernel
        With ``kernel.params`` in canonical form, so that
        ``get(kernel.name, **kernel.params)`` makes it again.

    Raises
    ------
    convflow.errors.KernelError
        No kernel is called `name` (the message suggests the closest), a
        parameter is unknown or missing (the message lists the accepted
        ones), or a value is invalid.

    See Also
    --------
    names, describe, signature

    Examples
    --------
    >>> get("gaussian", sigma=(1.0, 2.0), order=(0, 1)).shape
    (9, 17)
    >>> get("sobl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.KernelError: no kernel named 'sobl'. Did you mean 'sobel'? Known kernels: box, ...
    """
    function = _lookup(name)
    parameters = inspect.signature(function).parameters
    accepted = ", ".join(parameters)
    for param in params:
        if param not in parameters:
            hint = difflib.get_close_matches(param, list(parameters), n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise KernelError(f"{name} kernel has no parameter {param!r}.{did_you_mean} It takes: {accepted}")
    for param, spec in parameters.items():
        if spec.default is spec.empty and param not in params:
            example = _REQUIRED_EXAMPLES.get(param, f"{param}=...")
            raise KernelError(f"{name} kernel needs {param}, e.g. {example}; it takes: {accepted}")
    return function(**params)
