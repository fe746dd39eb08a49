"""Named 3-wide stencils: gradients, the Laplacian, sharpen, emboss and the classic edge set.

Each is defined for 1, 2 and 3 axes; in 2-D each is the textbook 3x3 kernel.
The gradients follow scipy.ndimage.sobel, which correlates: the kernel
holds [-1, 0, 1] along the derivative axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convflow.kernels._kernel import Kernel, Term
from convflow.kernels._params import check_axis, common, delta, make, named

DIFFERENCE = (-1.0, 0.0, 1.0)


def gradient(
    kernel: str, smoothing: Sequence[float], axis: object, ndim: object, normalize: object
) -> Kernel:
    """The central difference [-1, 0, 1] along `axis`, times `smoothing` along the others."""
    ndim, normalize = common(kernel, ndim, normalize)
    axis = check_axis(kernel, axis, ndim)
    factors = [np.array(DIFFERENCE if a == axis else smoothing) for a in range(ndim)]
    return make(kernel, {"axis": axis, "ndim": ndim, "normalize": normalize}, factors=factors)


def centre(ndim: int) -> tuple[int, ...]:
    """Index of the centre of a (3,) * ndim kernel."""
    return (1,) * ndim


def star(ndim: int, middle: float, neighbour: float) -> np.ndarray:
    """A (3,) * ndim kernel: `middle` at the centre, `neighbour` at the 2 * ndim face neighbours."""
    values = np.zeros((3,) * ndim)
    for axis in range(ndim):
        for side in (0, 2):
            index = list(centre(ndim))
            index[axis] = side
            values[tuple(index)] = neighbour
    values[centre(ndim)] = middle
    return values


def star_terms(ndim: int, middle: float, neighbour: float) -> list[Term]:
    """`star` as a sum over the axes: ``[neighbour, middle / ndim, neighbour]`` along one, a 1 across.

    Examples
    --------
    >>> [t.vectors[0].tolist() for t in star_terms(2, -4.0, 1.0)]
    [[1.0, -2.0, 1.0], [0.0, 1.0, 0.0]]
    """
    terms = []
    for axis in range(ndim):
        line = np.array([neighbour, middle / ndim, neighbour])
        terms.append(Term(1.0, tuple(line if a == axis else delta(3) for a in range(ndim))))
    return terms


def ring(ndim: int, middle: float) -> np.ndarray:
    """A (3,) * ndim kernel of -1 with `middle` at the centre."""
    values = -np.ones((3,) * ndim)
    values[centre(ndim)] = middle
    return values


@named("Sobel derivative along `axis`, [1, 2, 1] smoothing across (scipy.ndimage.sobel with correlate)")
def sobel(axis: int = -1, *, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the Sobel gradient kernel along `axis`, for `convflow.correlate`.

    ``correlate(x, sobel(axis=a))`` equals ``scipy.ndimage.sobel(x, axis=a)``.

    Sign convention: the kernel holds ``[-1, 0, 1]`` along `axis`, so
    `convflow.correlate` gives ``x[i + 1] - x[i - 1]``, smoothed by
    ``[1, 2, 1]`` across: positive where values increase along the axis, as
    scipy computes it.  `convflow.convolve` flips the kernel and gives the
    negative.

    Parameters
    ----------
    axis : int, optional
        The derivative axis among the kernel's own axes; -1, the last, is x
        (it differentiates across columns).
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``, separable: ``[-1, 0, 1]`` along `axis`,
        ``[1, 2, 1]`` along each other axis.

    Raises
    ------
    convflow.errors.KernelError
        `axis` is out of range for `ndim`, `ndim` is not 1, 2 or 3, or
        ``normalize=True``.

    See Also
    --------
    prewitt, scharr
    scipy.ndimage.sobel : the filter this reproduces with `correlate`.

    Examples
    --------
    >>> import numpy as np
    >>> from convflow import convolve, correlate, kernels
    >>> kernels.sobel().values
    array([[-1.,  0.,  1.],
           [-2.,  0.,  2.],
           [-1.,  0.,  1.]])
    >>> ramp = np.tile(np.arange(5.0), (3, 1))  # increases along the last axis
    >>> correlate(ramp, kernels.sobel())[1]
    array([4., 8., 8., 8., 4.])
    >>> convolve(ramp, kernels.sobel())[1]
    array([-4., -8., -8., -8., -4.])
    """
    return gradient("sobel", (1.0, 2.0, 1.0), axis, ndim, normalize)


@named("Prewitt derivative along `axis`, [1, 1, 1] smoothing across (scipy.ndimage.prewitt with correlate)")
def prewitt(axis: int = -1, *, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the Prewitt gradient kernel along `axis`, for `convflow.correlate`.

    ``correlate(x, prewitt(axis=a))`` equals ``scipy.ndimage.prewitt(x, axis=a)``.

    Sign convention: as for `sobel`, the kernel holds ``[-1, 0, 1]`` along
    `axis`, so `convflow.correlate` is positive where values increase along
    the axis and `convflow.convolve` gives the negative.  Across the axis it
    averages with ``[1, 1, 1]``.

    Parameters
    ----------
    axis : int, optional
        The derivative axis among the kernel's own axes; -1 is the last.
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``, separable: ``[-1, 0, 1]`` along `axis`,
        ``[1, 1, 1]`` along each other axis.

    Raises
    ------
    convflow.errors.KernelError
        `axis` is out of range for `ndim`, `ndim` is not 1, 2 or 3, or
        ``normalize=True``.

    See Also
    --------
    sobel, scharr
    scipy.ndimage.prewitt : the filter this reproduces with `correlate`.

    Examples
    --------
    >>> import numpy as np
    >>> from convflow import correlate, kernels
    >>> kernels.prewitt(axis=0).values
    array([[-1., -1., -1.],
           [ 0.,  0.,  0.],
           [ 1.,  1.,  1.]])
    >>> ramp = np.tile(np.arange(5.0), (3, 1))
    >>> correlate(ramp, kernels.prewitt())[1]
    array([3., 6., 6., 6., 3.])
    """
    return gradient("prewitt", (1.0, 1.0, 1.0), axis, ndim, normalize)


@named("Scharr derivative along `axis`, [3, 10, 3] smoothing across (nearer rotation-invariant than Sobel)")
def scharr(axis: int = -1, *, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the Scharr gradient kernel along `axis`, for `convflow.correlate`.

    Scharr's smoothing ``[3, 10, 3]`` makes the gradient's direction depend
    less on the image's rotation than Sobel's ``[1, 2, 1]``.  The weights
    are not scaled: divide the result by ``16 ** (ndim - 1) * 2`` for a unit
    slope.

    Sign convention: as for `sobel`, the kernel holds ``[-1, 0, 1]`` along
    `axis`, so `convflow.correlate` is positive where values increase along
    the axis and `convflow.convolve` gives the negative.

    Parameters
    ----------
    axis : int, optional
        The derivative axis among the kernel's own axes; -1 is the last.
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``, separable: ``[-1, 0, 1]`` along `axis`,
        ``[3, 10, 3]`` along each other axis.

    Raises
    ------
    convflow.errors.KernelError
        `axis` is out of range for `ndim`, `ndim` is not 1, 2 or 3, or
        ``normalize=True``.

    See Also
    --------
    sobel, prewitt

    Examples
    --------
    >>> import numpy as np
    >>> from convflow import correlate, kernels
    >>> kernels.scharr().values
    array([[ -3.,   0.,   3.],
           [-10.,   0.,  10.],
           [ -3.,   0.,   3.]])
    >>> ramp = np.tile(np.arange(5.0), (3, 1))
    >>> correlate(ramp, kernels.scharr())[1] / 32
    array([0.5, 1. , 1. , 1. , 0.5])
    """
    return gradient("scharr", (3.0, 10.0, 3.0), axis, ndim, normalize)


@named("discrete Laplacian, [1, -2, 1] summed over the axes (scipy.ndimage.laplace)")
def laplacian(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the discrete Laplacian kernel: ``[1, -2, 1]`` along each axis, summed.

    ``convolve(x, laplacian(ndim=n))`` equals ``scipy.ndimage.laplace(x)``
    for an n-axis `x` (the kernel is symmetric, so `convflow.correlate`
    gives the same).

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``: ``-2 * ndim`` at the centre, 1 at each face
        neighbour.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3, or ``normalize=True``.

    See Also
    --------
    log : the Laplacian of a Gaussian.
    edge2 : its negative.
    scipy.ndimage.laplace : the filter this reproduces.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.laplacian().values
    array([[ 0.,  1.,  0.],
           [ 1., -4.,  1.],
           [ 0.,  1.,  0.]])
    """
    ndim, normalize = common("laplacian", ndim, normalize)
    params = {"ndim": ndim, "normalize": normalize}
    return make("laplacian", params, star(ndim, -2.0 * ndim, 1.0), terms=star_terms(ndim, -2.0 * ndim, 1.0))


@named("identity minus the Laplacian: [[0, -1, 0], [-1, 5, -1], [0, -1, 0]] in 2-D")
def sharpen(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the sharpening kernel: the identity minus the discrete Laplacian.

    ``convolve(x, sharpen(ndim=n))`` equals ``x - scipy.ndimage.laplace(x)``.
    In 2-D it is the classic ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do).

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``: ``2 * ndim + 1`` at the centre, -1 at each
        face neighbour.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3.

    See Also
    --------
    sharpen2 : subtracts all neighbours, corners included.
    unsharp : sharpening by a Gaussian of any width.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.sharpen().values
    array([[ 0., -1.,  0.],
           [-1.,  5., -1.],
           [ 0., -1.,  0.]])
    >>> kernels.sharpen(ndim=1).values
    array([-1.,  3., -1.])
    """
    ndim, normalize = common("sharpen", ndim, normalize)
    params = {"ndim": ndim, "normalize": normalize}
    return make(
        "sharpen", params, star(ndim, 2.0 * ndim + 1, -1.0), terms=star_terms(ndim, 2.0 * ndim + 1, -1.0)
    )


@named("relief effect lit from one corner: [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]] in 2-D")
def emboss(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the emboss kernel: a relief effect, as if lit from one corner.

    Each weight is the sum of its offsets from the centre, and the centre is
    1, so the weights sum to 1 and flat regions keep their value.  In 2-D it
    is the classic ``[[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]``; in 1-D
    ``[-1, 1, 1]``.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do).

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.emboss().values
    array([[-2., -1.,  0.],
           [-1.,  1.,  1.],
           [ 0.,  1.,  2.]])
    """
    ndim, normalize = common("emboss", ndim, normalize)
    values = (np.indices((3,) * ndim).sum(axis=0) - ndim).astype(np.float64)
    values[centre(ndim)] = 1.0
    return make("emboss", {"ndim": ndim, "normalize": normalize}, values)


@named("diagonal edges: [[1, 0, -1], [0, 0, 0], [-1, 0, 1]] in 2-D")
def edge1(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the classic diagonal edge kernel: ``[1, 0, -1]`` on every axis, multiplied.

    The outer product of ``[1, 0, -1]`` along each axis: separable, and a
    mixed derivative, so it responds to edges along the diagonals.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``, separable.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3, or ``normalize=True``.

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.edge1().values
    array([[ 1.,  0., -1.],
           [ 0.,  0.,  0.],
           [-1.,  0.,  1.]])
    """
    ndim, normalize = common("edge1", ndim, normalize)
    factors = [np.array(DIFFERENCE[::-1])] * ndim
    return make("edge1", {"ndim": ndim, "normalize": normalize}, factors=factors)


@named("4-neighbour edges (minus the Laplacian): [[0, -1, 0], [-1, 4, -1], [0, -1, 0]] in 2-D")
def edge2(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the classic face-neighbour edge kernel: minus the discrete Laplacian.

    ``convolve(x, edge2(ndim=n))`` equals ``-scipy.ndimage.laplace(x)``.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``: ``2 * ndim`` at the centre, -1 at each face
        neighbour.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3, or ``normalize=True``.

    See Also
    --------
    laplacian, edge3

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.edge2().values
    array([[ 0., -1.,  0.],
           [-1.,  4., -1.],
           [ 0., -1.,  0.]])
    """
    ndim, normalize = common("edge2", ndim, normalize)
    params = {"ndim": ndim, "normalize": normalize}
    return make("edge2", params, star(ndim, 2.0 * ndim, -1.0), terms=star_terms(ndim, 2.0 * ndim, -1.0))


@named("8-neighbour edges: [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]] in 2-D")
def edge3(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the classic all-neighbour edge kernel: the centre minus all its neighbours.

    -1 everywhere but the centre, which is ``3**ndim - 1`` (8 in 2-D, 26 in
    3-D): ``convolve(x, edge3())`` is ``3**ndim`` times ``x`` minus its
    ``3**ndim``-sample mean.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Must stay False: the weights sum to zero.

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3, or ``normalize=True``.

    See Also
    --------
    edge2, sharpen2

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.edge3().values
    array([[-1., -1., -1.],
           [-1.,  8., -1.],
           [-1., -1., -1.]])
    """
    ndim, normalize = common("edge3", ndim, normalize)
    return make("edge3", {"ndim": ndim, "normalize": normalize}, ring(ndim, 3.0**ndim - 1))


@named("8-neighbour sharpen: [[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]] in 2-D")
def sharpen2(*, ndim: int = 2, normalize: bool = False) -> Kernel:
    """Return the classic all-neighbour sharpening kernel: `edge3` plus the identity.

    -1 everywhere but the centre, which is ``3**ndim`` (9 in 2-D).  Stronger
    than `sharpen`, which subtracts only the face neighbours.

    Parameters
    ----------
    ndim : {1, 2, 3}, optional
        Number of axes.
    normalize : bool, optional
        Scale the weights to sum 1 (they already do).

    Returns
    -------
    Kernel
        Shape ``(3,) * ndim``.

    Raises
    ------
    convflow.errors.KernelError
        `ndim` is not 1, 2 or 3.

    See Also
    --------
    sharpen, edge3

    Examples
    --------
    >>> from convflow import kernels
    >>> kernels.sharpen2().values
    array([[-1., -1., -1.],
           [-1.,  9., -1.],
           [-1., -1., -1.]])
    """
    ndim, normalize = common("sharpen2", ndim, normalize)
    return make("sharpen2", {"ndim": ndim, "normalize": normalize}, ring(ndim, 3.0**ndim))
