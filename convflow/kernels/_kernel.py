"""The Kernel object, and the checks that turn any numbers into its canonical weights."""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from convflow.errors import KernelError

NDIMS = (1, 2, 3)

# normalize refuses a kernel whose sum is at most this fraction of sum|k|:
# derivative kernels sum to zero up to rounding (about 1e-17 relative), and
# dividing by that rounding error would give meaningless weights.
ZERO_SUM_RTOL = 1e-10

# Factors must multiply out to the values within this fraction of sum|k| (L1):
# rounding of the outer product, far inside the engine's own separability test.
FACTORS_RTOL = 1e-12


class Term(NamedTuple):
    """One separable term of a kernel: ``coef * outer(*vectors)``, one vector per axis.

    Each vector is as long as the kernel's axis, so a term on its own is a
    kernel of the same shape; the identity and shifts are terms whose
    vectors hold a single 1.

    Examples
    --------
    >>> import numpy as np
    >>> term = Term(-0.5, (np.array([1.0, 2.0, 1.0]), np.array([0.0, 1.0, 0.0])))
    >>> outer(term.vectors) * term.coef
    array([[-0. , -0.5, -0. ],
           [-0. , -1. , -0. ],
           [-0. , -0.5, -0. ]])
    """

    coef: float
    vectors: tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False, repr=False)
class Kernel:
    """Weights for `convflow.convolve` and `convflow.correlate`, with their provenance.

    A frozen object: its `values` are a read-only float64 array, and
    ``np.asarray(kernel)`` gives them without a copy.  Make one with
    `convflow.kernels.get`, a named kernel's function, `from_array`,
    `from_factors` or `convflow.kernels.load` rather than directly.

    Parameters
    ----------
    values : array_like
        The weights: 1 to 3 axes, every one finite.
    factors : sequence of array_like, optional
        One 1-D vector per axis whose outer product equals `values`, when the
        kernel is separable; convflow then filters one axis at a time.  A 1-D
        kernel gets ``(values,)``.
    name : str, optional
        A library name such as ``'gaussian'``, or any label for a custom kernel.
    description : str, optional
        One line saying what the kernel does.
    params : mapping, optional
        The parameters that made it, in canonical form: for a library kernel
        ``kernels.get(kernel.name, **kernel.params)`` makes it again.
    terms : sequence of (float, sequence of array_like), optional
        An exact representation of `values` as a short sum of separable
        terms (`Term`: a coefficient and one 1-D vector per axis, as long as
        that axis), such as the identity minus a Gaussian; convflow then
        runs the kernel as 1-D passes, shared between terms where they
        agree.  Default: the one term of `factors`, when given.

    Attributes
    ----------
    values : numpy.ndarray
        The read-only float64 weights.
    factors : tuple of numpy.ndarray or None
        Read-only 1-D float64 vectors whose outer product is `values`, or
        None when the kernel is not known to be separable.
    name : str
        The name.
    description : str
        One line.
    params : mapping
        A read-only mapping of the parameters.
    terms : tuple of Term or None
        Separable terms (read-only vectors) whose sum is `values`, or None
        when none are known; a kernel with `factors` has their one term.

    Raises
    ------
    convflow.errors.KernelError
        The values are not real numbers, are empty, ragged or not finite, have
        no axis or more than 3, or `factors` (or `terms`) do not multiply
        out (sum up) to `values`.

    See Also
    --------
    convflow.kernels.get : a library kernel by name.
    from_array, from_factors : a kernel from numbers.
    convflow.kernels.load : a kernel from a file.

    Examples
    --------
    >>> from convflow import kernels
    >>> k = kernels.get("sobel", axis=0)
    >>> k
    Kernel('sobel', shape=(3, 3), params={'axis': 0, 'ndim': 2, 'normalize': False})
    >>> k.values
    array([[-1., -2., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  2.,  1.]])
    >>> k.factors
    (array([-1.,  0.,  1.]), array([1., 2., 1.]))
    >>> kernels.get(k.name, **k.params) == k
    True
    >>> [round(t.coef, 2) for t in kernels.get("unsharp", sigma=1.0, amount=0.5).terms]
    [1.5, -0.5]
    """

    values: np.ndarray
    factors: tuple[np.ndarray, ...] | None = None
    name: str = "custom"
    description: str = "custom kernel"
    params: Mapping[str, Any] = field(default_factory=dict)
    terms: tuple[Term, ...] | None = None

    def __post_init__(self) -> None:
        """Check the values and freeze every field in canonical form."""
        what = f"kernel {self.name!r}"
        values = as_weights(self.values, what)
        factors = self.factors
        if factors is None and values.ndim == 1:
            factors = (values,)
        if factors is not None:
            factors = check_factors(factors, values, what)
        terms = self.terms
        if terms is None and factors is not None:
            terms = (Term(1.0, factors),)
        elif terms is not None:
            terms = check_terms(terms, values, what)
        if "\n" in self.description:
            raise KernelError(f"{what}: description must be one line; got {self.description!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "terms", terms)
        # A copy behind a read-only view: neither the caller nor a user can change it.
        object.__setattr__(self, "params", types.MappingProxyType(dict(self.params)))

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return int(self.values.ndim)

    @property
    def shape(self) -> tuple[int, ...]:
        """Size of each axis."""
        return tuple(int(n) for n in self.values.shape)

    @property
    def is_separable(self) -> bool:
        """Whether the kernel carries factors (an outer product of 1-D vectors)."""
        return self.factors is not None

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        """The weights as a numpy array: read-only unless copied."""
        if dtype is None or np.dtype(dtype) == self.values.dtype:
            return self.values.copy() if copy else self.values
        if copy is False:
            raise ValueError(
                f"kernel {self.name!r} holds float64 weights; converting them to {dtype} needs a copy"
            )
        return self.values.astype(dtype)

    def flipped(self) -> Kernel:
        """Return the kernel reversed on every axis.

        ``convolve(x, k)`` equals ``correlate(x, k.flipped())`` when every
        axis has odd size.  On an axis of even size scipy's convolve also
        moves the centre by one, so the match needs ``origin=-1`` there.

        Returns
        -------
        Kernel
            Named ``'flipped <name>'``, with the same `params`.

        Examples
        --------
        >>> from convflow import kernels
        >>> kernels.shift(offset=(0, 1)).flipped().values
        array([[1., 0., 0.]])
        """
        factors = None if self.factors is None else tuple(f[::-1] for f in self.factors)
        terms = None
        if self.terms is not None:
            terms = tuple(Term(t.coef, tuple(v[::-1] for v in t.vectors)) for t in self.terms)
        return Kernel(
            np.flip(self.values),
            factors,
            name=f"flipped {self.name}",
            description=f"{self.description}, flipped on every axis",
            params=self.params,
            terms=terms,
        )

    def __reduce__(self) -> tuple[type[Kernel], tuple[Any, ...]]:
        # A mappingproxy cannot be pickled: rebuild (and recheck) from a plain dict.
        return (
            Kernel,
            (self.values, self.factors, self.name, self.description, dict(self.params), self.terms),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Kernel):
            return NotImplemented
        return (
            self.name == other.name
            and dict(self.params) == dict(other.params)
            and self.shape == other.shape
            and bool(np.array_equal(self.values, other.values))
        )

    def __hash__(self) -> int:
        return hash((self.name, self.shape, self.values.tobytes()))

    def __repr__(self) -> str:
        return f"Kernel({self.name!r}, shape={self.shape}, params={dict(self.params)})"


def as_weights(values: object, what: str) -> np.ndarray:
    """Return `values` as a fresh read-only float64 array of 1-3 axes of finite weights, or raise.

    Examples
    --------
    >>> as_weights([[1, -0.0]], "kernel 'k'")
    array([[1., 0.]])
    """
    try:
        array = np.array(values)
    except ValueError as err:  # numpy 2 refuses ragged nested lists
        raise KernelError(f"{what} has ragged values: every row must have the same length ({err})") from err
    if array.dtype.kind not in "biuf":
        raise KernelError(
            f"{what} has values of dtype {array.dtype}; kernel weights must be real numbers, "
            "e.g. [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]"
        )
    if array.ndim not in NDIMS:
        raise KernelError(f"{what} has {array.ndim} axes (shape {array.shape}); a kernel has 1, 2 or 3 axes")
    if array.size == 0:
        raise KernelError(f"{what} has shape {array.shape} and holds no values; every axis needs size >= 1")
    array = array.astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0, which prints plainly
    bad = np.argwhere(~np.isfinite(array))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise KernelError(
            f"{what} holds a non-finite value ({array[index]} at index {index}); every weight must be finite"
        )
    array.flags.writeable = False
    return array


def check_factors(
    factors: Sequence[ArrayLike], values: np.ndarray, what: str, check_values: bool = True
) -> tuple[np.ndarray, ...]:
    """Return `factors` as read-only float64 vectors whose outer product is `values`, or raise.

    With `check_values` False only their number and lengths are checked against `values`.
    """
    vectors = []
    for vector in factors:
        array = np.array(vector, dtype=np.float64) + 0.0
        if array.ndim != 1:
            raise KernelError(f"{what}: every factor must be a 1-D vector; got one of shape {array.shape}")
        if not np.isfinite(array).all():
            raise KernelError(f"{what}: a factor holds a non-finite value; every weight must be finite")
        array.flags.writeable = False
        vectors.append(array)
    shape = tuple(v.size for v in vectors)
    if shape != values.shape:
        raise KernelError(
            f"{what}: factors of lengths {shape} do not match values of shape {values.shape}; "
            "give one factor per axis, as long as that axis"
        )
    if not check_values:
        return tuple(vectors)
    error = float(np.abs(outer(vectors) - values).sum())
    if error > FACTORS_RTOL * float(np.abs(values).sum()):
        raise KernelError(f"{what}: the outer product of its factors differs from its values (L1 {error:g})")
    return tuple(vectors)


def check_terms(terms: Sequence[Any], values: np.ndarray, what: str) -> tuple[Term, ...]:
    """Return `terms` as `Term`s of read-only float64 vectors that sum to `values`, or raise."""
    checked = []
    total = np.zeros(values.shape)
    for index, term in enumerate(terms):
        try:
            coef, vectors = term
        except (TypeError, ValueError) as err:
            raise KernelError(
                f"{what}: terms[{index}] is {term!r}; every term is a pair (coef, vectors)"
            ) from err
        if isinstance(coef, bool) or not isinstance(coef, int | float | np.floating | np.integer):
            raise KernelError(f"{what}: terms[{index}] has coef={coef!r}; a coef must be a real number")
        if not np.isfinite(coef):
            raise KernelError(f"{what}: terms[{index}] has coef={coef!r}; a coef must be finite")
        vectors = check_factors(vectors, np.empty(values.shape), f"{what} terms[{index}]", check_values=False)
        checked.append(Term(float(coef), vectors))
        total += float(coef) * outer(vectors)
    if not checked:
        raise KernelError(f"{what}: terms is empty; give at least one (coef, vectors) pair, or None")
    error = float(np.abs(total - values).sum())
    if error > FACTORS_RTOL * float(np.abs(values).sum()):
        raise KernelError(f"{what}: the sum of its terms differs from its values (L1 {error:g})")
    return tuple(checked)


def outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Outer product of 1-D vectors, one axis each.

    Examples
    --------
    >>> outer([np.array([1.0, 2.0]), np.array([1.0, 0.0, -1.0])])
    array([[ 1.,  0., -1.],
           [ 2.,  0., -2.]])
    """
    result = np.ones(())
    for vector in vectors:
        result = np.multiply.outer(result, vector)
    return result


def normalized(
    what: str, values: np.ndarray, factors: tuple[np.ndarray, ...] | None
) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
    """Scale values (and the first factor) to sum 1, or raise naming `what` on a zero-sum kernel."""
    total = normalizing_sum(what, values)
    if factors is not None:
        factors = (factors[0] / total, *factors[1:])
    return values / total, factors


def normalizing_sum(what: str, values: np.ndarray) -> float:
    """The sum normalize divides by, or raise naming `what` on a zero-sum kernel."""
    total = float(values.sum())
    if abs(total) <= ZERO_SUM_RTOL * float(np.abs(values).sum()):
        raise KernelError(
            f"{what} got normalize=True, but its weights sum to zero ({total:.3g}), "
            "so they cannot be scaled to sum 1; use normalize=False"
        )
    return total


def check_normalize(what: str, normalize: object) -> bool:
    """Return `normalize` if it is a bool, or raise naming `what`."""
    if not isinstance(normalize, bool | np.bool_):
        raise KernelError(f"{what} got normalize={normalize!r}; normalize must be True or False")
    return bool(normalize)


def from_array(
    values: ArrayLike, *, name: str = "custom", description: str | None = None, normalize: bool = False
) -> Kernel:
    """Return a kernel holding `values`: a nested list or an array.

    Parameters
    ----------
    values : array_like
        Real, finite weights with 1, 2 or 3 axes, in the orientation
        `convflow.correlate` uses as they are (`convflow.convolve` flips them).
    name : str, optional
        A label for messages and provenance.
    description : str, optional
        One line; default ``'custom <shape> kernel'``.
    normalize : bool, optional
        Scale the weights to sum 1.

    Returns
    -------
    Kernel
        A float64 copy of `values`; it carries `factors` only in 1-D (the
        engine still finds other separable kernels itself).

    Raises
    ------
    convflow.errors.KernelError
        The values are ragged, not real numbers, empty or not finite, have no
        axis or more than 3, or sum to zero with ``normalize=True``.

    See Also
    --------
    from_factors : a separable kernel from its 1-D factors.
    convflow.kernels.load : a kernel from a file.

    Examples
    --------
    >>> from convflow import kernels
    >>> k = kernels.from_array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], name="binomial", normalize=True)
    >>> k.values
    array([[0.0625, 0.125 , 0.0625],
           [0.125 , 0.25  , 0.125 ],
           [0.0625, 0.125 , 0.0625]])
    >>> kernels.from_array([[1, 2], [3]])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convflow.errors.KernelError: kernel 'custom' has ragged values: every row must have the same length ...
    """
    what = f"kernel {name!r}"
    array = as_weights(values, what)
    if check_normalize(what, normalize):
        array, _ = normalized(what, array, None)
    shape = "x".join(str(n) for n in array.shape)
    return Kernel(array, name=name, description=description or f"custom {shape} kernel")


def from_factors(
    *factors: ArrayLike, name: str = "custom", description: str | None = None, normalize: bool = False
) -> Kernel:
    """Return the separable kernel whose weights are the outer product of `factors`.

    Parameters
    ----------
    *factors : array_like
        One 1-D vector per axis, 1 to 3 of them, the first for the first axis.
    name : str, optional
        A label for messages and provenance.
    description : str, optional
        One line; default ``'custom separable <shape> kernel'``.
    normalize : bool, optional
        Scale the weights to sum 1.

    Returns
    -------
    Kernel
        Carrying `factors`, so convflow can filter one axis at a time.

    Raises
    ------
    convflow.errors.KernelError
        A factor is not a finite 1-D vector, there are no factors or more
        than 3, or the weights sum to zero with ``normalize=True``.

    See Also
    --------
    from_array : a kernel from all its weights.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.from_factors([1, 2, 1], [-1, 0, 1]).values
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    """
    what = f"kernel {name!r}"
    if len(factors) not in NDIMS:
        raise KernelError(f"{what} got {len(factors)} factors; give one 1-D vector per axis, 1 to 3 of them")
    vectors = []
    for i, factor in enumerate(factors):
        vector = as_weights(factor, f"{what} factor {i}")
        if vector.ndim != 1:
            raise KernelError(
                f"{what} factor {i} has shape {vector.shape}; every factor must be a 1-D vector"
            )
        vectors.append(vector)
    values = outer(vectors)
    checked: tuple[np.ndarray, ...] | None = tuple(vectors)
    if check_normalize(what, normalize):
        values, checked = normalized(what, values, checked)
    shape = "x".join(str(n) for n in values.shape)
    return Kernel(values, checked, name=name, description=description or f"custom separable {shape} kernel")
