"""Named kernels built from averages: identity, shift, box, and the Gaussian family.

gaussian, log, unsharp and dog reproduce scipy.ndimage's Gaussian filters under
`convflow.convolve`: each 1-D weight vector is the one scipy computes, in
convolution orientation (scipy reverses it to correlate; convflow's convolve
reverses it the same way).  log, unsharp and dog carry their exact `terms`,
sums of separable Gaussians and the identity, so the engine runs them as
1-D passes.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from convflow.errors import KernelError
from convflow.kernels._kernel import Kernel, Term, check_normalize, outer
from convflow.kernels._params import (
    LIBRARY,
    as_sequence,
    check_size,
    common,
    delta,
    ints,
    is_real,
    make,
    named,
    positive_float,
    positive_floats,
    resolve_ndim,
)

# normalize=True on a LoG is refused below this ratio of its weights' sum to their absolute sum.
LOG_NORMALIZE_RTOL = 1e-2
# The smallest sigma whose square is a normal float64: below it 1 / sigma**2 is infinite.
MIN_SIGMA = math.sqrt(sys.float_info.min)


@named("the input unchanged: a single weight of 1")
def identity(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the identity kernel: one weight of 1.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do).

    Returns
    -------
    Kernel
        Shape ``(1,) * ndim``, separable.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.identity().values
    array([[1.]])
    """
    ndim, normalize = common("identity", ndim, normalize)
    return make("identity", {"ndim": ndim, "normalize": normalize}, factors=[np.ones(1)] * ndim)


@named("moves the image by an integer offset per axis, like np.roll away from the edges")
def shift(offset: int | Sequence[int], *, ndim: int | None = None, normalize: bool = False) -> Kernel:
    """Return a kernel that moves an image by `offset` under convolution.

    ``convolve(x, shift(offset=d))`` equals ``np.roll(x, d)`` along the
    kernel's axes, away from the edges (everywhere with ``mode='wrap'``):
    ``out[i] = x[i - d]``.  `convflow.correlate` moves the other way.

    Parameters
    ----------
    offset : int or sequence of int
        One integer per axis; a single integer only with ``ndim=1``.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `offset`.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do).

    Returns
    -------
    Kernel
        Size ``2 * abs(offset) + 1`` per axis: a single 1, `offset` from the
        centre.  Separable.

    Raises
    ------
    convflow.errors.KernelError
        `offset` holds a non-integer or has the wrong number of entries.

    Examples
    --------
    >>> import numpy as np
    >>> from convflow import convolve, kernels
    >>> kernels.shift(offset=(0, 1)).values
    array([[0., 0., 1.]])
    >>> convolve(np.array([[1.0, 2.0, 3.0, 4.0]]), kernels.shift(offset=(0, 1)), mode="wrap")
    array([[4., 1., 2., 3.]])
    """
    if as_sequence(offset) is None and ndim != 1:
        # One offset for every axis would move along the diagonal: too easy to get by mistake.
        raise KernelError(
            f"shift kernel got offset={offset!r} for ndim={2 if ndim is None else ndim}; "
            f"give one offset per axis, e.g. offset=(0, {offset!r}), or ndim=1"
        )
    ndim = resolve_ndim("shift", ndim, offset=offset)
    normalize = check_normalize("shift kernel", normalize)
    rule = "every offset must be an integer, e.g. offset=(0, -3)"
    offsets = ints("shift", "offset", offset, ndim, None, rule)
    params = {"offset": offsets, "ndim": ndim, "normalize": normalize}
    check_size("shift", params, tuple(2 * abs(d) + 1 for d in offsets))
    factors = []
    for d in offsets:
        vector = np.zeros(2 * abs(d) + 1)
        vector[abs(d) + d] = 1.0
        factors.append(vector)
    return make("shift", params, factors=factors)


@named("mean over a window of `size` (uniform_filter); normalized by default")
def box(size: int | Sequence[int] = 3, *, ndim: int | None = None, normalize: bool = True) -> Kernel:
    """Return a box (moving-average) kernel.

    With the default ``normalize=True`` every weight is ``1 / prod(size)``,
    so ``correlate(x, box(size))`` equals ``scipy.ndimage.uniform_filter(x,
    size)``.  For odd sizes `convflow.convolve` gives the same; for an even
    size it centres the window one sample later, as ``scipy.ndimage.convolve``
    does.

    Parameters
    ----------
    size : int or sequence of int, optional
        Window length, odd or even: one for every axis or one per axis.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `size` when it is a
        sequence, else 2.
    normalize : bool, optional
        Scale the weights to sum 1.  False gives all ones: a moving sum.

    Returns
    -------
    Kernel
        Shape `size`, separable.

    Raises
    ------
    convflow.errors.KernelError
        A size is not a positive integer, or `size` and `ndim` disagree.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.box(3, ndim=1).values
    array([0.33333333, 0.33333333, 0.33333333])
    >>> kernels.box((2, 3), normalize=False).values
    array([[1., 1., 1.],
           [1., 1., 1.]])
    """
    ndim = resolve_ndim("box", ndim, size=size)
    normalize = check_normalize("box kernel", normalize)
    rule = "every size must be a positive integer, e.g. size=3 or size=(3, 5)"
    sizes = ints("box", "size", size, ndim, 1, rule)
    params = {"size": sizes, "ndim": ndim, "normalize": normalize}
    check_size("box", params, sizes)
    # Built summing to 1: dividing by the rounded sum, as make() would, only adds rounding.
    factors = tuple(np.full(n, 1.0 / n) if normalize else np.ones(n) for n in sizes)
    return Kernel(outer(factors), factors, name="box", description=LIBRARY["box"][1], params=params)


def gaussian_1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """Sampled Gaussian (summing to 1) or its `order`-th derivative at -radius..radius.

    scipy.ndimage.gaussian_filter1d's weights before it reverses them to
    correlate.  The k-th derivative of ``phi(x) = exp(-x**2 / (2 sigma**2))``
    is ``q_k(x) phi(x)``, with ``q_0 = 1`` and
    ``q_{k+1}(x) = q_k'(x) - x q_k(x) / sigma**2``.

    Examples
    --------
    >>> gaussian_1d(1.0, 1, 1)
    array([ 0.27406862,  0.        , -0.27406862])
    """
    with np.errstate(over="ignore", invalid="ignore"):  # make() refuses weights that overflow
        return _gaussian_1d(sigma, order, radius)


def _gaussian_1d(sigma: float, order: int, radius: int) -> np.ndarray:
    """`gaussian_1d` without its floating-point error state."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    phi /= phi.sum()
    if order == 0:
        return phi
    powers = np.arange(order + 1)
    q = np.zeros(order + 1)  # q[i] is the coefficient of x**i
    q[0] = 1.0
    for _ in range(order):
        step = np.zeros_like(q)
        step[:-1] = powers[1:] * q[1:]  # q'
        step[1:] -= q[:-1] / (sigma * sigma)  # - x q / sigma**2
        q = step
    derivative: np.ndarray = (x[:, None] ** powers).dot(q) * phi
    return derivative


def gaussian_params(
    kernel: str, sigma: object, truncate: object, order: object, ndim: int
) -> tuple[tuple[float, ...], float, tuple[int, ...], tuple[int, ...]]:
    """Check Gaussian parameters; return the sigmas, truncate, orders and radii."""
    sigmas = positive_floats(kernel, "sigma", sigma, ndim, "e.g. sigma=1.5 or sigma=(1.0, 2.0)")
    if min(sigmas) < MIN_SIGMA:
        # scipy's own formula, exp(-x**2 / (2 sigma**2)), divides by zero when sigma**2 underflows.
        raise KernelError(
            f"{kernel} kernel got sigma={sigma!r}; a sigma below {MIN_SIGMA:.2g} squares to zero, so no "
            f"Gaussian can be sampled: every sigma must be at least {MIN_SIGMA:.2g} (with the default "
            "truncate=4.0 any sigma below 0.125 already gives a kernel of one weight)"
        )
    rule = "truncate must be a positive number of standard deviations, e.g. truncate=4.0"
    truncate = positive_float(kernel, "truncate", truncate, rule)
    rule = (
        "every order must be a non-negative integer (0 smooths, 1 is the first derivative), "
        "e.g. order=0 or order=(0, 1)"
    )
    orders = ints(kernel, "order", order, ndim, 0, rule)
    radii = tuple(int(truncate * s + 0.5) for s in sigmas)  # scipy's radius
    return sigmas, truncate, orders, radii


@named("Gaussian blur or its derivatives, as scipy.ndimage.gaussian_filter")
def gaussian(
    sigma: float | Sequence[float],
    *,
    truncate: float = 4.0,
    order: int | Sequence[int] = 0,
    ndim: int | None = None,
    normalize: bool = False,
) -> Kernel:
    """Return a Gaussian kernel, or a Gaussian derivative kernel.

    ``convolve(x, gaussian(sigma, truncate=t, order=o))`` equals
    ``scipy.ndimage.gaussian_filter(x, sigma, order=o, truncate=t)`` over
    the kernel's axes, odd derivative orders included: along an ``order=1``
    axis the result is positive where values increase.

    Parameters
    ----------
    sigma : float or sequence of float
        Standard deviation in samples, positive: one for every axis or one
        per axis.
    truncate : float, optional
        Cut the kernel off this many standard deviations from its centre:
        an axis has radius ``int(truncate * sigma + 0.5)``, as in scipy.
    order : int or sequence of int, optional
        Derivative order, one for every axis or one per axis: 0 smooths,
        1 is the first derivative of the smoothed image, and so on.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `sigma` or `order` when one
        is a sequence, else 2.
    normalize : bool, optional
        Scale the weights to sum 1.  Order 0 weights already do; odd orders
        sum to zero and cannot be normalized.

    Returns
    -------
    Kernel
        Shape ``2 * radius + 1`` per axis, separable.

    Raises
    ------
    convflow.errors.KernelError
        A sigma or `truncate` is not positive, an order is not a non-negative
        integer, per-axis lengths disagree with `ndim`, the kernel would hold
        more than 2**26 weights, or ``normalize=True`` on a zero-sum
        derivative.

    See Also
    --------
    log : the Laplacian of this Gaussian.
    unsharp : sharpening by subtracting this Gaussian.
    scipy.ndimage.gaussian_filter : the filter this reproduces.

    Notes
    -----
    In ``mode='constant'`` with a nonzero `cval`, scipy pads each 1-D pass
    with `cval` afresh, so for derivatives in 2-D and 3-D gaussian_filter
    differs from any single N-D filter near the edges; with ``cval=0``, or
    order 0, the two agree.

    Examples
    --------
    >>> from convflow import convolve, kernels
    >>> kernels.gaussian(1.0, truncate=2.0, ndim=1).values
    array([0.05448868, 0.24420134, 0.40261995, 0.24420134, 0.05448868])
    >>> import numpy as np, scipy.ndimage as ndi
    >>> x = np.arange(10.0) ** 2
    >>> slope = convolve(x, kernels.gaussian(1.5, order=1, ndim=1))
    >>> np.allclose(slope, ndi.gaussian_filter(x, 1.5, order=1))
    True
    """
    ndim = resolve_ndim("gaussian", ndim, sigma=sigma, order=order)
    normalize = check_normalize("gaussian kernel", normalize)
    sigmas, truncate, orders, radii = gaussian_params("gaussian", sigma, truncate, order, ndim)
    params = {"sigma": sigmas, "truncate": truncate, "order": orders, "ndim": ndim, "normalize": normalize}
    check_size("gaussian", params, tuple(2 * r + 1 for r in radii))
    factors = [gaussian_1d(s, o, r) for s, o, r in zip(sigmas, orders, radii, strict=True)]
    return make("gaussian", params, factors=factors)


@named("Laplacian of Gaussian, as scipy.ndimage.gaussian_laplace")
def log(
    sigma: float | Sequence[float],
    *,
    truncate: float = 4.0,
    ndim: int | None = None,
    normalize: bool = False,
) -> Kernel:
    """Return the Laplacian of Gaussian: second-derivative Gaussians summed over the axes.

    ``convolve(x, log(sigma, truncate=t))`` equals
    ``scipy.ndimage.gaussian_laplace(x, sigma, truncate=t)``: the sum over
    axes ``a`` of `gaussian` with ``order=2`` on ``a`` and 0 elsewhere, each
    cut off at `truncate` standard deviations exactly as scipy cuts it, so
    the two agree to rounding.  It is negative on a bright blob of radius
    about ``sigma * sqrt(ndim)``: negate it to detect blobs.

    Parameters
    ----------
    sigma : float or sequence of float
        Standard deviation in samples, positive: one for every axis or one
        per axis.
    truncate : float, optional
        Cut-off in standard deviations, as for `gaussian`.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `sigma` when it is a
        sequence, else 2.
    normalize : bool, optional
        Scale the weights to sum 1.  The weights would sum to zero if not
        truncated, so this is refused where their sum is under
        ``LOG_NORMALIZE_RTOL`` of their absolute sum (the default truncate
        of 4.0 leaves about 1e-4): that sum is only the cut-off tails.

    Returns
    -------
    Kernel
        Shape ``2 * int(truncate * sigma + 0.5) + 1`` per axis.  Not
        separable, except in 1-D, but it carries its `ndim` separable terms,
        which share their smoothing passes.

    Raises
    ------
    convflow.errors.KernelError
        A sigma or `truncate` is not positive, `sigma` and `ndim` disagree,
        the kernel would hold more than 2**26 weights, or ``normalize=True``
        on weights that sum to about zero.

    See Also
    --------
    gaussian, laplacian
    scipy.ndimage.gaussian_laplace : the filter this reproduces.

    Examples
    --------
    >>> from convflow import convolve, kernels
    >>> kernels.log(0.8, truncate=1.5, ndim=1).values
    array([ 0.21005355, -0.81564292,  0.21005355])
    >>> import numpy as np, scipy.ndimage as ndi
    >>> blob = np.zeros((9, 9))
    >>> blob[3:6, 3:6] = 1.0
    >>> np.allclose(convolve(blob, kernels.log(1.5)), ndi.gaussian_laplace(blob, 1.5))
    True
    """
    ndim = resolve_ndim("log", ndim, sigma=sigma)
    normalize = check_normalize("log kernel", normalize)
    sigmas, truncate, _, radii = gaussian_params("log", sigma, truncate, 0, ndim)
    params = {"sigma": sigmas, "truncate": truncate, "ndim": ndim, "normalize": normalize}
    check_size("log", params, tuple(2 * r + 1 for r in radii))
    smooth = [gaussian_1d(s, 0, r) for s, r in zip(sigmas, radii, strict=True)]
    values = np.zeros(tuple(2 * r + 1 for r in radii))
    terms = []
    for axis in range(ndim):
        vectors = list(smooth)
        vectors[axis] = gaussian_1d(sigmas[axis], 2, radii[axis])
        values += outer(vectors)
        terms.append(Term(1.0, tuple(vectors)))
    total, size = float(values.sum()), float(np.abs(values).sum())
    if normalize and abs(total) < LOG_NORMALIZE_RTOL * size:
        raise KernelError(
            f"log kernel got normalize=True, but its weights sum to about zero ({total:.3g}, "
            f"{abs(total) / size:.1g} of their absolute sum: only the tails that truncate={truncate} cuts "
            f"off), so scaling them to sum 1 would multiply them by {1 / total:.3g}; use normalize=False"
        )
    return make("log", params, values, terms=terms)


@named("unsharp mask: identity + amount * (identity - gaussian)")
def unsharp(
    sigma: float | Sequence[float],
    amount: float = 1.0,
    *,
    truncate: float = 4.0,
    ndim: int | None = None,
    normalize: bool = False,
) -> Kernel:
    """Return an unsharp-mask kernel: the image plus `amount` times its detail.

    ``convolve(x, unsharp(sigma, amount))`` equals
    ``x + amount * (x - scipy.ndimage.gaussian_filter(x, sigma))``: the
    detail the Gaussian removes is added back `amount` times.

    Parameters
    ----------
    sigma : float or sequence of float
        Standard deviation of the blur, positive: one for every axis or one
        per axis.
    amount : float, optional
        Strength of the sharpening; 0 gives the identity, a negative amount
        blurs.
    truncate : float, optional
        Cut-off of the Gaussian in standard deviations, as for `gaussian`.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `sigma` when it is a
        sequence, else 2.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do, to rounding).

    Returns
    -------
    Kernel
        The shape of ``gaussian(sigma, truncate=truncate)``.  Not separable,
        except in 1-D, but it carries its two terms: the identity, which
        costs no pass, and the Gaussian.

    Raises
    ------
    convflow.errors.KernelError
        A sigma or `truncate` is not positive, `amount` is not a finite
        number, `sigma` and `ndim` disagree, or the kernel would hold more
        than 2**26 weights.

    See Also
    --------
    gaussian, sharpen

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.unsharp(1.0, 0.5, truncate=1.0, ndim=1).values
    array([-0.13703431,  1.27406862, -0.13703431])
    """
    ndim = resolve_ndim("unsharp", ndim, sigma=sigma)
    normalize = check_normalize("unsharp kernel", normalize)
    if not (is_real(amount) and math.isfinite(amount)):
        raise KernelError(
            f"unsharp kernel got amount={amount!r}; amount must be a finite number, e.g. amount=1.0"
        )
    sigmas, truncate, _, radii = gaussian_params("unsharp", sigma, truncate, 0, ndim)
    params = {
        "sigma": sigmas,
        "amount": float(amount),
        "truncate": truncate,
        "ndim": ndim,
        "normalize": normalize,
    }
    check_size("unsharp", params, tuple(2 * r + 1 for r in radii))
    smooth = tuple(gaussian_1d(s, 0, r) for s, r in zip(sigmas, radii, strict=True))
    values = -float(amount) * outer(smooth)
    values[tuple(radii)] += 1.0 + float(amount)
    identity = tuple(delta(2 * r + 1) for r in radii)
    terms = [Term(1.0 + float(amount), identity), Term(-float(amount), smooth)]
    return make("unsharp", params, values, terms=terms)


@named("difference of Gaussians: gaussian(sigma1) - gaussian(sigma2)")
def dog(
    sigma1: float | Sequence[float],
    sigma2: float | Sequence[float],
    *,
    truncate: float = 4.0,
    ndim: int | None = None,
    normalize: bool = False,
) -> Kernel:
    """Return a difference-of-Gaussians kernel: the band between two blurs.

    ``convolve(x, dog(sigma1, sigma2, truncate=t))`` equals
    ``gaussian_filter(x, sigma1, truncate=t) - gaussian_filter(x, sigma2,
    truncate=t)``: with ``sigma1 < sigma2`` it keeps the details larger than
    about `sigma1` and smaller than about `sigma2`, and is positive on a
    bright blob of that size.

    Parameters
    ----------
    sigma1, sigma2 : float or sequence of float
        Standard deviations of the two Gaussians in samples, positive: one
        for every axis or one per axis.  They must differ on some axis.
    truncate : float, optional
        Cut-off of both Gaussians in standard deviations, as for `gaussian`.
    ndim : {1, 2, 3}, optional
        Number of axes.  Default: the length of `sigma1` or `sigma2` when
        one is a sequence, else 2.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        The shape of the wider Gaussian (the narrower one padded with zeros).
        Not separable, except in 1-D, but it carries its two separable
        terms, which the engine runs as 1-D passes.

    Raises
    ------
    convflow.errors.KernelError
        A sigma or `truncate` is not positive, `sigma1` equals `sigma2`,
        per-axis lengths disagree with `ndim`, the kernel would hold more
        than 2**26 weights, or ``normalize=True``.

    See Also
    --------
    gaussian, log
    scipy.ndimage.gaussian_filter : the two filters this subtracts.

    Examples
    --------
    >>> import numpy as np, scipy.ndimage as ndi
    >>> from convflow import convolve, kernels
    >>> kernels.dog(0.5, 1.0, truncate=1.0, ndim=1).values
    array([-0.16756164,  0.33512328, -0.16756164])
    >>> x = np.zeros((9, 9))
    >>> x[3:6, 3:6] = 1.0
    >>> expected = ndi.gaussian_filter(x, 1.0) - ndi.gaussian_filter(x, 2.0)
    >>> np.allclose(convolve(x, kernels.dog(1.0, 2.0)), expected)
    True
    """
    ndim = resolve_ndim("dog", ndim, sigma1=sigma1, sigma2=sigma2)
    normalize = check_normalize("dog kernel", normalize)
    narrow, truncate, _, narrow_radii = gaussian_params("dog", sigma1, truncate, 0, ndim)
    wide, _, _, wide_radii = gaussian_params("dog", sigma2, truncate, 0, ndim)
    if narrow == wide:
        raise KernelError(
            f"dog kernel got sigma1={sigma1!r} and sigma2={sigma2!r}, which are equal: the difference "
            "of two equal Gaussians is zero; give two different sigmas, e.g. sigma1=1.0, sigma2=2.0"
        )
    params = {"sigma1": narrow, "sigma2": wide, "truncate": truncate, "ndim": ndim, "normalize": normalize}
    radii = tuple(max(a, b) for a, b in zip(narrow_radii, wide_radii, strict=True))
    check_size("dog", params, tuple(2 * r + 1 for r in radii))
    terms = []
    for coef, sigmas, own in ((1.0, narrow, narrow_radii), (-1.0, wide, wide_radii)):
        vectors = []
        for sigma, r, radius in zip(sigmas, own, radii, strict=True):
            vectors.append(np.pad(gaussian_1d(sigma, 0, r), radius - r))
        terms.append(Term(coef, tuple(vectors)))
    values = outer(terms[0].vectors) - outer(terms[1].vectors)
    return make("dog", params, values, terms=terms)
