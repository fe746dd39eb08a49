"""Tests of convflow.kernels: each named kernel against scipy, custom kernels, files, errors."""

# Issue #3, items 1-3 and 6.

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import assert_matches_scipy
from hypothesis import given, settings
from hypothesis import strategies as st

import convflow
from convflow import convolve, correlate, kernels
from convflow.engine import MODES
from convflow.errors import KernelError
from convflow.kernels._smooth import MIN_SIGMA

# Small images, one per kernel dimensionality; odd and even lengths.
SHAPES = {1: (17,), 2: (9, 12), 3: (6, 7, 8)}

# A sample of modes for the long parametrisations; the full set runs on a few kernels.
SOME_MODES = ("reflect", "constant", "wrap", "nearest", "mirror")

SEPARABLE = ("box", "edge1", "gaussian", "identity", "prewitt", "scharr", "shift", "sobel")

# Parameters that make each library kernel, for the tests that loop over all of them.
EXAMPLE_PARAMS: dict[str, dict[str, object]] = {
    "box": {"size": 3},
    "dog": {"sigma1": 1.0, "sigma2": 1.5},
    "edge1": {},
    "edge2": {},
    "edge3": {},
    "emboss": {},
    "gaussian": {"sigma": 1.0},
    "identity": {},
    "laplacian": {},
    "log": {"sigma": 1.0},
    "prewitt": {},
    "scharr": {},
    "sharpen": {},
    "sharpen2": {},
    "shift": {"offset": (1, -2)},
    "sobel": {},
    "unsharp": {"sigma": 1.0},
}


def image(ndim: int, seed: int = 0) -> np.ndarray:
    """A reproducible float64 test image of SHAPES[ndim]."""
    return np.random.default_rng(20261125 + seed).standard_normal(SHAPES[ndim])


def check(
    result: np.ndarray, expected: np.ndarray, kernel: kernels.Kernel, x: np.ndarray, cval: float = 0.0
) -> None:
    """The spec's float64 tolerance: |err| <= 1e-9 * sum|k| * max(|x|, |cval|)."""
    assert_matches_scipy(result, expected, kernel=kernel, image=x, cval=cval, compute_dtype=np.float64)


def with_ndim(name: str, ndim: int) -> kernels.Kernel:
    """The library kernel `name` with its example parameters, in `ndim` dimensions."""
    params = dict(EXAMPLE_PARAMS[name])
    if name == "shift":
        params["offset"] = (1, -2, 0)[:ndim] if ndim > 1 else 1
    return kernels.get(name, ndim=ndim, **params)


# --- The library ------------------------------------------------------------------


def test_names_lists_the_spec_kernels_sorted() -> None:
    assert kernels.names() == tuple(sorted(EXAMPLE_PARAMS))
    assert kernels.get.__doc__ is not None
    for name in kernels.names():
        assert f"``{name}``" in kernels.get.__doc__, f"get's docstring does not list {name}"
        assert name in kernels.__all__


def test_describe_gives_one_line_per_kernel() -> None:
    described = kernels.describe()
    assert [name for name, _ in described] == list(kernels.names())
    for name, line in described:
        assert line, name
        assert "\n" not in line, name
        assert kernels.get(name, **EXAMPLE_PARAMS[name]).description == line


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
def test_signature_names_ndim_and_normalize(name: str) -> None:
    signature = kernels.signature(name)
    assert "ndim=" in signature
    assert "normalize=" in signature


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_get_remakes_a_kernel_from_its_name_and_params(name: str, ndim: int) -> None:
    kernel = with_ndim(name, ndim)
    assert kernel.name == name
    assert kernel.ndim == ndim == kernel.params["ndim"]
    assert kernels.get(kernel.name, **kernel.params) == kernel


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_factors_multiply_out_to_the_values(name: str, ndim: int) -> None:
    kernel = with_ndim(name, ndim)
    if name in SEPARABLE or ndim == 1:
        assert kernel.factors is not None
        assert kernel.is_separable
        assert [f.shape for f in kernel.factors] == [(n,) for n in kernel.shape]
        outer = kernel.factors[0]
        for factor in kernel.factors[1:]:
            outer = np.multiply.outer(outer, factor)
        np.testing.assert_allclose(outer, kernel.values, rtol=1e-15, atol=1e-17)
    else:
        assert kernel.factors is None


# Kernels that carry more than one separable term (#17): the engine runs them as 1-D passes.
SUMS = ("dog", "edge2", "laplacian", "log", "sharpen", "unsharp")


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_terms_sum_to_the_values(name: str, ndim: int) -> None:
    kernel = with_ndim(name, ndim)
    if name in SEPARABLE:
        assert len(kernel.terms) == 1
    elif name in SUMS and ndim > 1:
        assert len(kernel.terms) == (2 if name in ("dog", "unsharp") else ndim)
    elif ndim > 1:
        assert kernel.terms is None
    if kernel.terms is None:
        return
    total = np.zeros(kernel.shape)
    for term in kernel.terms:
        assert isinstance(term, kernels.Term)
        assert [v.shape for v in term.vectors] == [(n,) for n in kernel.shape]
        assert all(not v.flags.writeable for v in term.vectors)
        outer = np.array(term.coef)
        for vector in term.vectors:
            outer = np.multiply.outer(outer, vector)
        total += outer
    np.testing.assert_allclose(total, kernel.values, rtol=0, atol=1e-15 * np.abs(kernel.values).sum())


@pytest.mark.parametrize("name", SUMS)
def test_terms_survive_flipping_pickling_and_normalizing(name: str) -> None:
    kernel = with_ndim(name, 3)
    flipped = kernel.flipped()
    for term, back in zip(kernel.terms, flipped.terms, strict=True):
        assert term.coef == back.coef
        for vector, reversed_ in zip(term.vectors, back.vectors, strict=True):
            np.testing.assert_array_equal(vector[::-1], reversed_)
    again = pickle.loads(pickle.dumps(kernel))
    assert again == kernel
    assert [t.coef for t in again.terms] == [t.coef for t in kernel.terms]
    if name in ("unsharp", "sharpen"):  # the others sum to zero
        scaled = kernels.get(name, **{**kernel.params, "normalize": True})
        assert sum(t.coef * np.prod([v.sum() for v in t.vectors]) for t in scaled.terms) == pytest.approx(1.0)


def test_a_kernel_refuses_terms_that_do_not_sum_to_its_values() -> None:
    delta, ones = np.array([0.0, 1.0, 0.0]), np.ones(3)
    values = np.outer(delta, delta) * 3 - np.outer(ones, ones)
    good = kernels.Kernel(values, terms=[(3.0, (delta, delta)), (-1.0, (ones, ones))])
    assert len(good.terms) == 2
    with pytest.raises(KernelError, match=r"kernel 'custom': the sum of its terms differs from its values"):
        kernels.Kernel(values, terms=[(3.0, (delta, delta)), (1.0, (ones, ones))])
    with pytest.raises(KernelError, match=r"terms\[0\]: factors of lengths \(3, 2\) do not match"):
        kernels.Kernel(values, terms=[(3.0, (delta, delta[:2]))])
    with pytest.raises(KernelError, match=r"terms\[1\] has coef='x'; a coef must be a real number"):
        kernels.Kernel(values, terms=[(3.0, (delta, delta)), ("x", (ones, ones))])
    with pytest.raises(KernelError, match=r"terms\[0\] is 3\.0; every term is a pair \(coef, vectors\)"):
        kernels.Kernel(values, terms=[3.0])
    with pytest.raises(KernelError, match=r"terms is empty"):
        kernels.Kernel(values, terms=[])


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize(("sigma1", "sigma2"), [(1.0, 2.0), (2.0, 1.0), ((0.8, 1.5), (1.6, 1.5)), (0.5, 3.0)])
def test_dog_is_the_difference_of_two_gaussian_filters(
    mode: str, sigma1: float | tuple[float, ...], sigma2: float | tuple[float, ...]
) -> None:
    x = image(2)
    kernel = kernels.dog(sigma1, sigma2)
    expected = ndi.gaussian_filter(x, sigma1, mode=mode) - ndi.gaussian_filter(x, sigma2, mode=mode)
    check(convolve(x, kernel, mode=mode), expected, kernel, x)


@pytest.mark.parametrize("ndim", [1, 3])
def test_dog_in_other_dimensions_takes_the_wider_gaussians_shape(ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.dog(1.0, 1.7, truncate=3.0, ndim=ndim)
    assert kernel.shape == (2 * int(3.0 * 1.7 + 0.5) + 1,) * ndim
    expected = ndi.gaussian_filter(x, 1.0, truncate=3.0) - ndi.gaussian_filter(x, 1.7, truncate=3.0)
    check(convolve(x, kernel), expected, kernel, x)


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
def test_library_kernels_are_centred_with_odd_sizes(name: str) -> None:
    # A kernel of odd size has a centre, so convolve and correlate line up with scipy's filters.
    assert all(n % 2 == 1 for n in with_ndim(name, 3).shape)


# --- The Kernel object --------------------------------------------------------------


def test_kernel_is_frozen_and_its_values_read_only() -> None:
    kernel = kernels.gaussian(1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kernel.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        kernel.values[0, 0] = 1.0
    assert kernel.factors is not None
    with pytest.raises(ValueError, match="read-only"):
        kernel.factors[0][0] = 1.0
    with pytest.raises(TypeError):
        kernel.params["sigma"] = 2.0  # type: ignore[index]


def test_kernel_exposes_values_as_a_float64_array_without_copying() -> None:
    kernel = kernels.sobel()
    assert np.asarray(kernel) is kernel.values
    assert np.asarray(kernel, dtype=np.float64) is kernel.values
    assert kernel.values.dtype == np.float64
    assert (kernel.ndim, kernel.shape) == (2, (3, 3))
    copied = np.array(kernel, dtype=np.float32)
    assert copied.dtype == np.float32
    assert copied.flags.writeable


def test_kernel_survives_pickling() -> None:
    kernel = kernels.gaussian((1.0, 2.0), order=(0, 1))
    again = pickle.loads(pickle.dumps(kernel))
    assert again == kernel
    assert hash(again) == hash(kernel)
    assert again.factors is not None


def test_kernel_repr_shows_name_shape_and_params() -> None:
    assert (
        repr(kernels.box(2, ndim=1))
        == "Kernel('box', shape=(2,), params={'size': (2,), 'ndim': 1, 'normalize': True})"
    )


def test_kernels_with_different_params_differ() -> None:
    assert kernels.gaussian(1.0) != kernels.gaussian(1.5)
    assert kernels.sobel(axis=0) != kernels.sobel(axis=1)
    assert kernels.sobel(axis=-1) == kernels.sobel(axis=1)


@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_kernels_run_on_chunked_dask_arrays(op: str) -> None:
    x = image(2)
    kernel = kernels.gaussian((1.0, 2.0), order=(1, 0))
    lazy = da.from_array(x, chunks=(4, 5))  # chunks smaller than the 8-wide halo
    result = getattr(convflow, op)(lazy, kernel)
    assert isinstance(result, da.Array)
    expected = getattr(ndi, op)(x, np.asarray(kernel), mode="reflect")
    assert_matches_scipy(result, expected, kernel=kernel, image=lazy, cval=0.0, compute_dtype=np.float64)


@pytest.mark.parametrize("method", ["separable", "direct", "fft"])
@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_factors_give_the_same_answer_by_every_method(method: str, op: str) -> None:
    # The engine flips the factors itself for convolve; an unflipped factor shows up here.
    x = image(3)
    kernel = kernels.gaussian((1.0, 0.7, 1.3), order=(0, 1, 3))
    result = getattr(convflow, op)(x, kernel, method=method, mode="nearest")
    check(result, getattr(ndi, op)(x, kernel.values, mode="nearest"), kernel, x)


@pytest.mark.parametrize("name", sorted(EXAMPLE_PARAMS))
def test_convolve_equals_correlate_with_the_flipped_kernel(name: str) -> None:
    x = image(2)
    kernel = with_ndim(name, 2)
    flipped = kernel.flipped()
    assert flipped.name == f"flipped {name}"
    np.testing.assert_array_equal(flipped.values, kernel.values[::-1, ::-1])
    check(convolve(x, kernel), correlate(x, flipped), kernel, x)


def test_flipped_kernel_of_even_size_needs_origin_minus_one() -> None:
    x = image(2)
    kernel = kernels.from_array(np.arange(12.0).reshape(3, 4))
    check(convolve(x, kernel), correlate(x, kernel.flipped(), origin=(0, -1)), kernel, x)


def test_flip_example_by_hand() -> None:
    # Convolution reverses the kernel: an impulse comes out as the kernel, correlation as its mirror.
    x = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    kernel = kernels.from_array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(convolve(x, kernel, mode="constant"), [0, 1, 2, 3, 0], atol=1e-12)
    np.testing.assert_allclose(correlate(x, kernel, mode="constant"), [0, 3, 2, 1, 0], atol=1e-12)


# --- Each named kernel against scipy ------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_identity_returns_the_input(mode: str, ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.identity(ndim=ndim)
    assert kernel.shape == (1,) * ndim
    check(convolve(x, kernel, mode=mode), x, kernel, x)
    check(correlate(x, kernel, mode=mode), x, kernel, x)


@pytest.mark.parametrize(
    "offset", [1, -3, (0, 2), (-1, 3), (2, 0, -1), (0, 0, 0)], ids=lambda o: f"offset={o}"
)
def test_shift_matches_np_roll(offset: int | tuple[int, ...]) -> None:
    offsets = (offset,) if isinstance(offset, int) else offset
    ndim = len(offsets)
    x = image(ndim)
    kernel = kernels.shift(offset=offset, ndim=ndim)
    rolled = np.roll(x, offsets, axis=tuple(range(ndim)))
    # wrap mode makes it the roll everywhere; other modes agree away from the edges.
    check(convolve(x, kernel, mode="wrap"), rolled, kernel, x)
    inner = tuple(slice(abs(d), n - abs(d)) for d, n in zip(offsets, x.shape, strict=True))
    check(convolve(x, kernel, mode="reflect")[inner], rolled[inner], kernel, x)
    # correlate moves the other way.
    back = np.roll(x, tuple(-d for d in offsets), axis=tuple(range(ndim)))
    check(correlate(x, kernel, mode="wrap"), back, kernel, x)


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize(
    ("ndim", "size"), [(1, 1), (1, 4), (1, 5), (2, 3), (2, 2), (2, (3, 4)), (3, (2, 3, 5))]
)
def test_box_matches_uniform_filter(mode: str, ndim: int, size: int | tuple[int, ...]) -> None:
    x = image(ndim)
    kernel = kernels.box(size, ndim=ndim)
    expected = ndi.uniform_filter(x, size, mode=mode)
    check(correlate(x, kernel, mode=mode), expected, kernel, x)
    sizes = (size,) * ndim if isinstance(size, int) else size
    if all(n % 2 for n in sizes):
        check(convolve(x, kernel, mode=mode), expected, kernel, x)
    else:
        # An even box centres one sample later under convolve, as scipy's convolve does.
        check(convolve(x, kernel, mode=mode), ndi.convolve(x, kernel.values, mode=mode), kernel, x)


def test_box_is_normalized_unless_asked_not_to() -> None:
    assert kernels.box((2, 3)).values.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(kernels.box((2, 3), normalize=False).values, np.ones((2, 3)))


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_gaussian_matches_gaussian_filter(mode: str, order: int, ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.gaussian(1.2, order=order, ndim=ndim)
    # gaussian_filter pads every 1-D pass with cval afresh, so in constant mode it is
    # one N-D filter only where filtering the padding leaves cval: cval=0, order 0 or 1-D.
    cval = 0.5 if order == 0 or ndim == 1 else 0.0
    expected = ndi.gaussian_filter(x, 1.2, order=order, mode=mode, cval=cval)
    check(convolve(x, kernel, mode=mode, cval=cval), expected, kernel, x, cval=cval)


@pytest.mark.parametrize(
    ("sigma", "order", "truncate"),
    [
        ((0.8, 2.0), (0, 1), 4.0),
        ((1.5, 0.5), (3, 2), 3.0),
        ((2.0, 1.0), 1, 2.5),
        (1.0, (2, 0), 1.0),
        ((0.6, 1.1, 1.7), (1, 0, 2), 4.0),
        ((1.0, 1.0, 1.0), (3, 1, 0), 2.0),
    ],
)
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_gaussian_with_per_axis_sigma_and_order_matches_gaussian_filter(
    sigma: float | tuple[float, ...], order: int | tuple[int, ...], truncate: float, mode: str
) -> None:
    kernel = kernels.gaussian(sigma, order=order, truncate=truncate)
    x = image(kernel.ndim)
    expected = ndi.gaussian_filter(x, sigma, order=order, truncate=truncate, mode=mode)
    check(convolve(x, kernel, mode=mode), expected, kernel, x)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_factor_is_scipys_impulse_response(order: int, sigma: float) -> None:
    # The impulse response of a convolution is its kernel: this pins the orientation
    # without going through convflow's engine.
    factor = kernels.gaussian(sigma, order=order, ndim=1).values
    impulse = np.zeros(factor.size)
    impulse[factor.size // 2] = 1.0
    response = ndi.gaussian_filter1d(impulse, sigma, order=order, mode="constant")
    np.testing.assert_allclose(factor, response, rtol=0, atol=1e-15)


def test_gaussian_first_derivative_is_positive_on_a_rising_ramp() -> None:
    ramp = np.tile(np.arange(20.0), (5, 1))
    slope = convolve(ramp, kernels.gaussian(1.0, order=(0, 1)))
    np.testing.assert_allclose(slope[:, 5:-5], 1.0, atol=1e-3)
    assert (correlate(ramp, kernels.gaussian(1.0, order=(0, 1)))[:, 5:-5] < 0).all()


def test_gaussian_runs_over_the_given_image_axes() -> None:
    x = image(3)
    kernel = kernels.gaussian((1.0, 0.8), order=(1, 0))
    expected = ndi.gaussian_filter(x, (1.0, 0.8), order=(1, 0), axes=(0, 2))
    check(convolve(x, kernel, axes=(0, 2)), expected, kernel, x)


@settings(max_examples=30, deadline=None)  # each example is a few small filters; 30 cover the grid well
@given(
    sigma=st.lists(st.floats(0.3, 3.0), min_size=1, max_size=3),
    order=st.integers(0, 3),
    truncate=st.floats(0.5, 5.0),
)
def test_gaussian_matches_gaussian_filter_for_any_parameters(
    sigma: list[float], order: int, truncate: float
) -> None:
    kernel = kernels.gaussian(sigma, order=order, truncate=truncate)
    x = image(len(sigma))
    expected = ndi.gaussian_filter(x, sigma, order=order, truncate=truncate, mode="mirror")
    check(convolve(x, kernel, mode="mirror"), expected, kernel, x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("ndim", "axis"), [(1, 0), (1, -1), (2, 0), (2, 1), (2, -2), (3, 0), (3, 1), (3, -1)]
)
@pytest.mark.parametrize("name", ["sobel", "prewitt"])
def test_gradient_kernels_match_scipy_with_correlate(mode: str, ndim: int, axis: int, name: str) -> None:
    x = image(ndim)
    kernel = kernels.get(name, axis=axis, ndim=ndim)
    expected = getattr(ndi, name)(x, axis=axis, mode=mode)
    check(correlate(x, kernel, mode=mode), expected, kernel, x)
    check(convolve(x, kernel, mode=mode), -expected, kernel, x)


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize(("ndim", "axis"), [(1, 0), (2, 0), (2, -1), (3, 1)])
def test_scharr_matches_its_1d_passes(mode: str, ndim: int, axis: int) -> None:
    x = image(ndim)
    expected = ndi.correlate1d(x, [-1.0, 0.0, 1.0], axis=axis, mode=mode)
    for other in range(ndim):
        if other != axis % ndim:
            expected = ndi.correlate1d(expected, [3.0, 10.0, 3.0], axis=other, mode=mode)
    kernel = kernels.scharr(axis=axis, ndim=ndim)
    check(correlate(x, kernel, mode=mode), expected, kernel, x)


def test_gradient_kernels_by_hand() -> None:
    np.testing.assert_array_equal(kernels.sobel().values, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels.sobel(axis=0).values, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(kernels.prewitt().values, [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
    np.testing.assert_array_equal(kernels.scharr().values, [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    np.testing.assert_array_equal(kernels.sobel(ndim=1).values, [-1, 0, 1])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_laplacian_matches_laplace(mode: str, ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.laplacian(ndim=ndim)
    check(convolve(x, kernel, mode=mode), ndi.laplace(x, mode=mode), kernel, x)


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize(
    ("sigma", "truncate"), [(1.0, 4.0), (0.7, 2.0), ((1.0, 1.6), 4.0), ((0.8, 1.2, 1.0), 3.0), (2.0, 1.5)]
)
@pytest.mark.parametrize("ndim_given", [True, False])
def test_log_matches_gaussian_laplace(
    mode: str, sigma: float | tuple[float, ...], truncate: float, ndim_given: bool
) -> None:
    # gaussian_laplace sums gaussian_filter(order=2 on one axis) over the axes, each cut
    # at the same radius as the kernel, so the two agree to the spec's rounding tolerance
    # (1e-9 * sum|k| * max|x|), not merely up to truncation.
    ndim = len(sigma) if isinstance(sigma, tuple) else 2
    kernel = (
        kernels.log(sigma, truncate=truncate, ndim=ndim)
        if ndim_given
        else kernels.log(sigma, truncate=truncate)
    )
    x = image(ndim)
    expected = ndi.gaussian_laplace(x, sigma, mode=mode, truncate=truncate)
    check(convolve(x, kernel, mode=mode), expected, kernel, x)


def test_log_approximates_the_continuous_laplacian_of_gaussian() -> None:
    # Away from truncation the sampled kernel is the analytic LoG, sampled and
    # normalised per axis: close (rel. 2e-2 of its peak) to (r**2 - 2 s**2) / s**4 * G.
    sigma = 3.0
    kernel = kernels.log(sigma)
    y, x = np.indices(kernel.shape) - np.array(kernel.shape)[:, None, None] // 2
    r2 = x**2 + y**2
    analytic = (r2 - 2 * sigma**2) / sigma**4 * np.exp(-r2 / (2 * sigma**2)) / (2 * np.pi * sigma**2)
    np.testing.assert_allclose(kernel.values, analytic, rtol=0, atol=2e-2 * np.abs(analytic).max())


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_sharpen_is_identity_minus_laplacian(mode: str, ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.sharpen(ndim=ndim)
    check(convolve(x, kernel, mode=mode), x - ndi.laplace(x, mode=mode), kernel, x)
    assert kernel.values.sum() == 1.0


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize(("sigma", "amount"), [(1.0, 1.0), ((0.8, 1.5), 0.5), (2.0, -0.3), (1.0, 0.0)])
def test_unsharp_adds_back_what_the_gaussian_removes(
    mode: str, sigma: float | tuple[float, ...], amount: float
) -> None:
    x = image(2)
    kernel = kernels.unsharp(sigma, amount)
    expected = x + amount * (x - ndi.gaussian_filter(x, sigma, mode=mode))
    check(convolve(x, kernel, mode=mode), expected, kernel, x)


@pytest.mark.parametrize("ndim", [1, 3])
def test_unsharp_in_other_dimensions(ndim: int) -> None:
    x = image(ndim)
    kernel = kernels.unsharp(1.3, 2.0, ndim=ndim)
    check(convolve(x, kernel), x + 2.0 * (x - ndi.gaussian_filter(x, 1.3)), kernel, x)


@pytest.mark.parametrize("mode", SOME_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_edge_kernels_match_their_scipy_equivalents(mode: str, ndim: int) -> None:
    x = image(ndim)
    box3 = ndi.uniform_filter(x, 3, mode=mode)
    n = 3**ndim
    cases = {
        "edge2": -ndi.laplace(x, mode=mode),
        "edge3": n * (x - box3),
        "sharpen2": n * (x - box3) + x,
    }
    for name, expected in cases.items():
        kernel = kernels.get(name, ndim=ndim)
        check(convolve(x, kernel, mode=mode), expected, kernel, x)
    edge1 = x
    for axis in range(ndim):
        edge1 = ndi.correlate1d(edge1, [1.0, 0.0, -1.0], axis=axis, mode=mode)
    kernel = kernels.edge1(ndim=ndim)
    check(correlate(x, kernel, mode=mode), edge1, kernel, x)


@pytest.mark.parametrize("mode", SOME_MODES)
def test_emboss_matches_scipy_convolve_with_the_classic_kernel(mode: str) -> None:
    x = image(2)
    classic = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    kernel = kernels.emboss()
    check(convolve(x, kernel, mode=mode), ndi.convolve(x, classic, mode=mode), kernel, x)


@pytest.mark.parametrize(
    ("name", "classic"),
    [
        ("edge1", [[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
        ("edge2", [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
        ("edge3", [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
        ("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
        ("sharpen2", [[-1, -1, -1], [-1, 9, -1], [-1, -1, -1]]),
        ("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
        ("identity", [[1]]),
    ],
)
def test_classic_2d_kernels_by_hand(name: str, classic: list[list[int]]) -> None:
    np.testing.assert_array_equal(kernels.get(name).values, classic)


@pytest.mark.parametrize(
    ("name", "ndim", "centre", "total"),
    [
        ("laplacian", 1, -2, 0),
        ("laplacian", 3, -6, 0),
        ("sharpen", 1, 3, 1),
        ("sharpen", 3, 7, 1),
        ("edge2", 3, 6, 0),
        ("edge3", 3, 26, 0),
        ("sharpen2", 3, 27, 1),
        ("emboss", 1, 1, 1),
        ("emboss", 3, 1, 1),
    ],
)
def test_generalised_kernels_by_hand(name: str, ndim: int, centre: int, total: int) -> None:
    values = kernels.get(name, ndim=ndim).values
    assert values.shape == (3,) * ndim
    assert values[(1,) * ndim] == centre
    assert values.sum() == total


def test_signed_zeros_are_plain_zeros() -> None:
    # -0.0 prints as "-0." in docs and provenance; every library kernel stores +0.0.
    for name in kernels.names():
        kernel = with_ndim(name, 2)
        assert not np.signbit(kernel.values[kernel.values == 0]).any(), name


# --- normalize -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["identity", "shift", "box", "gaussian", "sharpen", "unsharp", "emboss", "sharpen2"]
)
def test_normalize_scales_to_sum_one(name: str) -> None:
    kernel = kernels.get(name, normalize=True, **EXAMPLE_PARAMS[name])
    assert kernel.params["normalize"] is True
    assert kernel.values.sum() == pytest.approx(1.0, abs=1e-14)
    if kernel.factors is not None:
        outer = np.multiply.outer(*kernel.factors)
        np.testing.assert_allclose(outer, kernel.values, rtol=1e-15)


def test_normalize_rescales_a_kernel_that_does_not_sum_to_one() -> None:
    kernel = kernels.box(3, normalize=False)
    assert kernel.values.sum() == 9.0
    ring = kernels.from_array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], normalize=True)
    np.testing.assert_allclose(ring.values, np.outer([1, 2, 1], [1, 2, 1]) / 16)
    separable = kernels.from_factors([1, 2, 1], [1, 1], normalize=True)
    assert separable.values.sum() == pytest.approx(1.0)
    assert separable.factors is not None
    np.testing.assert_allclose(np.multiply.outer(*separable.factors), separable.values)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("sobel", {}),
        ("prewitt", {"axis": 0}),
        ("scharr", {"ndim": 3}),
        ("laplacian", {}),
        ("edge1", {}),
        ("edge2", {"ndim": 1}),
        ("edge3", {}),
        ("gaussian", {"sigma": 1.0, "order": 1}),
        ("gaussian", {"sigma": 2.0, "order": (0, 3)}),
    ],
)
def test_normalize_refuses_a_zero_sum_kernel(name: str, params: dict[str, object]) -> None:
    with pytest.raises(KernelError, match=rf"{name} kernel got normalize=True, but its weights sum to zero"):
        kernels.get(name, normalize=True, **params)


def test_normalize_refuses_a_zero_sum_custom_kernel() -> None:
    with pytest.raises(KernelError, match="got normalize=True, but its weights sum to zero"):
        kernels.from_array([[1.0, -1.0]], normalize=True)


# --- Custom kernels ----------------------------------------------------------------------


def test_from_array_takes_nested_lists_and_arrays() -> None:
    source = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.int16)
    kernel = kernels.from_array(source, name="mine")
    source[1, 1] = 0
    assert kernel.values[1, 1] == 5.0  # a copy, not a view of the caller's array
    assert kernel.values.dtype == np.float64
    assert kernel.name == "mine"
    assert kernel.description == "custom 3x3 kernel"
    assert kernels.from_array([[True, False]]).values.tolist() == [[1.0, 0.0]]
    x = image(2)
    check(convolve(x, kernel), ndi.convolve(x, kernel.values), kernel, x)


def test_from_array_1d_kernel_carries_itself_as_factor() -> None:
    kernel = kernels.from_array([1, 2, 3])
    assert kernel.factors is not None
    np.testing.assert_array_equal(kernel.factors[0], [1.0, 2.0, 3.0])


def test_from_factors_builds_a_separable_kernel() -> None:
    kernel = kernels.from_factors([1, 2, 1], [-1, 0, 1], [1, 1], name="grad3d")
    assert kernel.shape == (3, 3, 2)
    assert kernel.is_separable
    x = image(3)
    result = convolve(x, kernel, method="separable")
    check(result, ndi.convolve(x, kernel.values), kernel, x)


def test_kernel_checks_that_factors_match_values() -> None:
    with pytest.raises(KernelError, match="outer product of its factors differs"):
        kernels.Kernel(np.ones((3, 3)), (np.ones(3), np.array([1.0, 2.0, 1.0])))
    with pytest.raises(
        KernelError, match=r"factors of lengths \(3, 2\) do not match values of shape \(3, 3\)"
    ):
        kernels.Kernel(np.ones((3, 3)), (np.ones(3), np.ones(2)))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([[1, 2], [3]], r"kernel 'custom' has ragged values: every row must have the same length"),
        ([["a", "b"]], r"has values of dtype <U1; kernel weights must be real numbers"),
        ([1 + 2j], r"has values of dtype complex128"),
        ([], r"has shape \(0,\) and holds no values"),
        (5.0, r"has 0 axes \(shape \(\)\); a kernel has 1, 2 or 3 axes"),
        (np.ones((1, 1, 1, 2)), r"has 4 axes \(shape \(1, 1, 1, 2\)\)"),
        ([[1.0, np.nan]], r"holds a non-finite value \(nan at index \(0, 1\)\)"),
        ([1.0, -np.inf], r"holds a non-finite value \(-inf at index \(1,\)\)"),
    ],
)
def test_from_array_errors_name_the_problem(values: object, match: str) -> None:
    with pytest.raises(KernelError, match=match):
        kernels.from_array(values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factors", "match"),
    [
        ((), r"kernel 'custom' got 0 factors; give one 1-D vector per axis, 1 to 3 of them"),
        (([1], [1], [1], [1]), r"got 4 factors"),
        (([[1, 2]], [1]), r"kernel 'custom' factor 0 has shape \(1, 2\); every factor must be a 1-D vector"),
        (([1, np.nan],), r"factor 0 holds a non-finite value \(nan at index \(1,\)\)"),
    ],
)
def test_from_factors_errors_name_the_problem(factors: tuple[object, ...], match: str) -> None:
    with pytest.raises(KernelError, match=match):
        kernels.from_factors(*factors)  # type: ignore[arg-type]


# --- Kernel files ---------------------------------------------------------------------------


def test_load_npy(tmp_path: Path) -> None:
    values = np.arange(27.0).reshape(3, 3, 3) - 13
    np.save(tmp_path / "cube.npy", values)
    kernel = kernels.load(tmp_path / "cube.npy")
    np.testing.assert_array_equal(kernel.values, values)
    assert kernel.name == "cube"
    assert kernel.params == {"file": str(tmp_path / "cube.npy")}
    assert kernel.description == "3x3x3 kernel from cube.npy"
    x = image(3)
    check(convolve(x, kernel), ndi.convolve(x, values), kernel, x)


def test_load_csv_and_txt_give_the_same_kernel(tmp_path: Path) -> None:
    (tmp_path / "k.csv").write_text("# a 2-D kernel\n0, -1, 0\n-1, 5, -1\n0,-1,0\n")
    (tmp_path / "k.txt").write_text("0 -1 0   # row one\n-1\t5 -1\n0 -1 0\n")
    csv = kernels.load(tmp_path / "k.csv", name="sharp")
    txt = kernels.load(str(tmp_path / "k.txt"))
    np.testing.assert_array_equal(csv.values, kernels.sharpen().values)
    np.testing.assert_array_equal(txt.values, csv.values)
    assert csv.name == "sharp"


def test_load_text_one_row_is_1d_and_blank_lines_separate_3d_slices(tmp_path: Path) -> None:
    (tmp_path / "row.txt").write_text("1 2 1\n")
    assert kernels.load(tmp_path / "row.txt").shape == (3,)
    (tmp_path / "column.csv").write_text("1\n2\n1\n")
    assert kernels.load(tmp_path / "column.csv").shape == (3, 1)
    (tmp_path / "cube.txt").write_text("1 2\n3 4\n\n# second slice\n5 6\n7 8\n\n\n")
    np.testing.assert_array_equal(
        kernels.load(tmp_path / "cube.txt").values, np.arange(1.0, 9.0).reshape(2, 2, 2)
    )


def test_load_normalize(tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", np.array([1.0, 2.0, 1.0]))
    np.testing.assert_array_equal(kernels.load(tmp_path / "k.npy", normalize=True).values, [0.25, 0.5, 0.25])


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("bad.csv", "1, 2, 3\n1, x, 3\n", r"bad.csv' line 2: 'x' is not a number"),
        (
            "bad.csv",
            "a,b,c\n1,2,3\n",
            r"bad.csv' line 1: 'a' is not a number; .*start a header or note with #",
        ),
        ("bad.csv", "1,,3\n", r"bad.csv' line 1: an empty field is not a number"),
        (
            "ragged.csv",
            "1, 2, 3\n4, 5\n",
            r"ragged.csv' line 2 has 2 values but line 1 has 3; every row needs",
        ),
        (
            "ragged.txt",
            "1 2\n3 4\n\n5 6\n",
            r"ragged.txt': the slice starting on line 4 has 1 rows but the first has 2",
        ),
        ("nan.txt", "1 2\n3 nan\n", r"nan.txt' line 2 holds 'nan'; every weight must be finite"),
        ("inf.csv", "1, -inf\n", r"inf.csv' line 1 holds '-inf'; every weight must be finite"),
        ("empty.txt", "# nothing\n\n", r"empty.txt' holds no numbers"),
        ("latin1.txt", b"1 2 \xff\n", r"latin1.txt' cannot be read as UTF-8 text"),
        ("broken.npy", b"not an npy file", r"broken.npy' is not a readable .npy array"),
    ],
)
def test_load_errors_name_the_file(tmp_path: Path, name: str, content: str | bytes, match: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(KernelError, match=match):
        kernels.load(path)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([1.0, np.inf]), r"k.npy' holds a non-finite value \(inf at index \(1,\)\)"),
        (np.ones((2, 2, 2, 2)), r"k.npy' has 4 axes"),
        (np.array(["a"]), r"k.npy' has values of dtype <U1"),
        (np.zeros((0, 3)), r"k.npy' has shape \(0, 3\) and holds no values"),
    ],
)
def test_load_npy_errors_name_the_file(tmp_path: Path, values: np.ndarray, match: str) -> None:
    np.save(tmp_path / "k.npy", values)
    with pytest.raises(KernelError, match=match):
        kernels.load(tmp_path / "k.npy")


def test_load_refuses_a_pickled_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(KernelError, match=r"obj.npy' is not a readable .npy array"):
        kernels.load(tmp_path / "obj.npy")


def test_load_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(
        KernelError, match=r"kernel file '.*missing.npy' does not exist \(looked for .*missing.npy\)"
    ):
        kernels.load(tmp_path / "missing.npy")


def test_load_refuses_other_suffixes_and_folders(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match=r"k.json' has suffix '.json'; kernel files are .npy, .txt, .csv"):
        kernels.load(write(tmp_path, "k.json", "[1, 2]"))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(KernelError, match=r"dir.npy' is a folder"):
        kernels.load(tmp_path / "dir.npy")


# --- Parameter errors --------------------------------------------------------------------------


def test_kernel_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="sigma=0"):
        kernels.gaussian(0)


BAD_PARAMETERS: list[tuple[Callable[[], object], str]] = [
    (
        lambda: kernels.gaussian(0),
        r"gaussian kernel got sigma=0; every sigma must be a positive number, e\.g\.",
    ),
    (lambda: kernels.gaussian(-1.5), r"got sigma=-1\.5; every sigma must be a positive number"),
    (lambda: kernels.gaussian((1.0, 0.0)), r"got sigma=\(1\.0, 0\.0\); every sigma must be a positive"),
    (lambda: kernels.gaussian(math.nan), r"got sigma=nan"),
    (lambda: kernels.gaussian("2"), r"got sigma='2'"),
    (lambda: kernels.gaussian(1.0, truncate=0), r"got truncate=0; truncate must be a positive number"),
    (lambda: kernels.gaussian(1.0, order=-1), r"got order=-1; every order must be a non-negative integer"),
    (lambda: kernels.gaussian(1.0, order=1.5), r"got order=1\.5; every order must be"),
    (lambda: kernels.gaussian(1.0, order=(0, -2)), r"got order=\(0, -2\)"),
    (
        lambda: kernels.gaussian((1.0, 2.0), ndim=3),
        r"got sigma=\(1\.0, 2\.0\) \(2 values\) for ndim=3; give one sigma per axis \(3 values\) or a single",
    ),
    (
        lambda: kernels.gaussian((1.0, 2.0), order=(0, 1, 2)),
        r"got order=\(0, 1, 2\) \(3 values\) for ndim=2 \(the length of sigma\)",
    ),
    (lambda: kernels.gaussian((), ndim=2), r"got sigma=\(\); give one number or one per axis"),
    (
        lambda: kernels.gaussian(5000.0, ndim=3),
        r"gaussian kernel got sigma=\(5000\.0, 5000\.0, 5000\.0\), truncate=4\.0, order=\(0, 0, 0\): "
        r"its shape \(40001, 40001, 40001\) holds .* weights, more than the limit",
    ),
    (lambda: kernels.log(0.0), r"log kernel got sigma=0\.0"),
    (lambda: kernels.log(1.0, truncate=-4), r"log kernel got truncate=-4"),
    (lambda: kernels.unsharp(-1.0), r"unsharp kernel got sigma=-1\.0"),
    (
        lambda: kernels.unsharp(1.0, math.inf),
        r"unsharp kernel got amount=inf; amount must be a finite number",
    ),
    (lambda: kernels.unsharp(1.0, "lots"), r"unsharp kernel got amount='lots'"),
    (
        lambda: kernels.dog(1.0, 1.0),
        r"dog kernel got sigma1=1\.0 and sigma2=1\.0, which are equal: .* e\.g\. sigma1=1\.0, sigma2=2\.0",
    ),
    (lambda: kernels.dog(0.0, 2.0), r"dog kernel got sigma=0\.0; every sigma must be a positive number"),
    (
        lambda: kernels.dog(1.0, (2.0, 3.0), ndim=3),
        r"dog kernel got sigma2=\(2\.0, 3\.0\) \(2 values\) for ndim=3",
    ),
    (
        lambda: kernels.dog(1.0, 2.0, normalize=True),
        r"dog kernel got normalize=True, but its weights sum to zero",
    ),
    (lambda: kernels.get("dog", sigma1=1.0), r"dog kernel needs sigma2, e\.g\. sigma2=2\.0"),
    (lambda: kernels.box(0), r"box kernel got size=0; every size must be a positive integer, e\.g\. size=3"),
    (lambda: kernels.box((3, 0)), r"box kernel got size=\(3, 0\); every size must be a positive integer"),
    (lambda: kernels.box(2.5), r"box kernel got size=2\.5"),
    (lambda: kernels.box(True), r"box kernel got size=True"),
    (lambda: kernels.box((3, 3), ndim=1), r"box kernel got size=\(3, 3\) \(2 values\) for ndim=1"),
    (
        lambda: kernels.sobel(axis=2),
        r"sobel kernel got axis=2 for ndim=2; axis is the derivative axis, .* -2 to 1",
    ),
    (lambda: kernels.prewitt(axis=-3, ndim=2), r"prewitt kernel got axis=-3 for ndim=2"),
    (lambda: kernels.scharr(axis=1, ndim=1), r"scharr kernel got axis=1 for ndim=1; .* from -1 to 0"),
    (lambda: kernels.sobel(axis=0.0), r"sobel kernel got axis=0\.0"),
    (lambda: kernels.identity(ndim=4), r"identity kernel got ndim=4; ndim must be 1, 2 or 3"),
    (lambda: kernels.laplacian(ndim=0), r"laplacian kernel got ndim=0; ndim must be 1, 2 or 3"),
    (lambda: kernels.edge1(ndim=True), r"edge1 kernel got ndim=True"),
    (lambda: kernels.emboss(ndim="2"), r"emboss kernel got ndim='2'"),
    (
        lambda: kernels.sharpen(normalize="yes"),
        r"sharpen kernel got normalize='yes'; normalize must be True or False",
    ),
    (
        lambda: kernels.shift(offset=1),
        r"shift kernel got offset=1 for ndim=2; give one offset per axis, e\.g\.",
    ),
    (
        lambda: kernels.shift(offset=(1.5, 0)),
        r"shift kernel got offset=\(1\.5, 0\); every offset must be an integer",
    ),
    (
        lambda: kernels.shift(offset=(1, 2), ndim=3),
        r"shift kernel got offset=\(1, 2\) \(2 values\) for ndim=3",
    ),
    (
        lambda: kernels.get("sobl"),
        r"no kernel named 'sobl'\. Did you mean 'sobel'\? Known kernels: box, dog, edge1",
    ),
    (lambda: kernels.get("gauss", sigma=1), r"no kernel named 'gauss'\. Did you mean 'gaussian'\?"),
    (lambda: kernels.get("xyzzy"), r"no kernel named 'xyzzy'\. Known kernels: box, .*, unsharp$"),
    (lambda: kernels.get(3), r"no kernel named 3\. Known kernels"),  # type: ignore[arg-type]
    (
        lambda: kernels.get("gaussian", sigmaa=1.0),
        r"gaussian kernel has no parameter 'sigmaa'\. Did you mean 'sigma'\? "
        r"It takes: sigma, truncate, order, ndim, normalize",
    ),
    (
        lambda: kernels.get("sobel", size=3),
        r"sobel kernel has no parameter 'size'\. It takes: axis, ndim, normalize",
    ),
    (
        lambda: kernels.get("gaussian"),
        r"gaussian kernel needs sigma, e\.g\. sigma=1\.5; it takes: sigma, truncate",
    ),
    (lambda: kernels.get("shift", ndim=2), r"shift kernel needs offset, e\.g\. offset=\(0, 1\)"),
    (lambda: kernels.signature("lapacian"), r"no kernel named 'lapacian'\. Did you mean 'laplacian'\?"),
]


@pytest.mark.parametrize(("make", "match"), BAD_PARAMETERS, ids=[m for _, m in BAD_PARAMETERS])
def test_bad_parameters_raise_kernel_error_naming_the_value(make: Callable[[], object], match: str) -> None:
    with pytest.raises(KernelError, match=match):
        make()


def test_even_box_sizes_are_allowed() -> None:
    # No library kernel needs an odd size: box takes even sizes, as uniform_filter does.
    assert kernels.box((2, 4)).shape == (2, 4)


def test_ndim_defaults_to_two_or_the_per_axis_length() -> None:
    assert kernels.gaussian(1.0).ndim == 2
    assert kernels.gaussian((1.0, 1.0, 1.0)).ndim == 3
    assert kernels.gaussian(1.0, order=(0, 1, 0)).ndim == 3
    assert kernels.box(3).ndim == 2
    assert kernels.shift(offset=(0, 0, 1)).shape == (1, 1, 3)
    assert kernels.shift(offset=-2, ndim=1).values.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_parameters_are_stored_in_canonical_form() -> None:
    kernel = kernels.gaussian(np.float32(1.5), order=np.int64(1), ndim=np.int64(2))
    assert dict(kernel.params) == {
        "sigma": (1.5, 1.5),
        "truncate": 4.0,
        "order": (1, 1),
        "ndim": 2,
        "normalize": False,
    }
    assert type(kernel.params["ndim"]) is int
    assert kernels.sobel(axis=-1, ndim=3).params["axis"] == 2


# --- Mistakes the fuzzing of #15 found ----------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian", "log", "unsharp"])
def test_a_sigma_that_squares_to_zero_is_refused(name: str) -> None:
    # Failed on main with ZeroDivisionError in gaussian_1d (#15, defect 5).
    with pytest.raises(KernelError, match=rf"{name} kernel got sigma=1e-300; a sigma below 1.5e-154"):
        kernels.get(name, sigma=1e-300)


def test_the_smallest_sigma_still_matches_scipy() -> None:
    x = np.arange(7.0)
    sigma = MIN_SIGMA
    np.testing.assert_array_equal(convolve(x, kernels.gaussian(sigma, ndim=1)), ndi.gaussian_filter(x, sigma))


def test_an_unsharp_amount_that_overflows_the_weights_is_refused() -> None:
    # Accepted on main: the weights' absolute sum was inf, and every result inf or nan (#15, item 6).
    with pytest.raises(KernelError, match=r"unsharp kernel got .*amount=-1e\+308.*: its weights overflow"):
        kernels.unsharp(1.0, amount=-1e308, ndim=3)


def test_a_derivative_whose_weights_overflow_is_refused() -> None:
    with pytest.raises(KernelError, match=r"gaussian kernel got sigma=\(1e-100,\), .*its weights overflow"):
        kernels.gaussian(1e-100, order=4, ndim=1)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_normalize_refuses_a_log_whose_weights_sum_to_about_zero(ndim: int) -> None:
    # Accepted on main: the truncated tails (about 1e-4 of the weights) were scaled up to sum 1 (#15, item 6).
    with pytest.raises(
        KernelError, match=r"log kernel got normalize=True, but its weights sum to about zero"
    ):
        kernels.log(2.0, ndim=ndim, normalize=True)


def test_normalize_still_scales_a_log_cut_short_enough_to_have_a_sum() -> None:
    values = kernels.log(1.0, truncate=1.0, ndim=1, normalize=True).values
    assert math.isclose(values.sum(), 1.0)
