"""Block methods (_methods.py): separable terms, the method choice, and every method against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import OPS, assert_filter_matches_scipy

import convflow
from convflow._methods import (
    METHODS,
    SEPARABLE_RTOL,
    choose_method,
    correlate_block,
    estimate_costs,
    separable_terms,
)
from convflow.errors import ArgumentError, MethodError


def outer(*vectors: np.ndarray) -> np.ndarray:
    result = np.array(1.0)
    for vector in vectors:
        result = np.multiply.outer(result, np.asarray(vector, dtype=np.float64))
    return result


def rebuild(terms) -> np.ndarray:
    return sum(term.coef * outer(*term.vectors) for term in terms)


@pytest.mark.parametrize("shape", [(3, 4), (5, 1, 3), (2, 3, 4, 2)])
def test_separable_terms_find_one_term_for_a_rank_one_kernel_of_any_dimension(shape, rng):
    kernel = outer(*(rng.standard_normal(n) for n in shape))
    terms = separable_terms(kernel)
    assert terms is not None
    assert len(terms) == 1
    assert [v.size for v in terms[0].vectors] == list(shape)
    np.testing.assert_allclose(rebuild(terms), kernel, rtol=0, atol=SEPARABLE_RTOL * np.abs(kernel).sum())


def test_separable_terms_take_a_one_dimensional_kernel_as_it_is():
    kernel = np.array([1.0, -2.0, 0.5])
    (term,) = separable_terms(kernel)
    np.testing.assert_array_equal(term.coef * term.vectors[0], kernel)


@pytest.mark.parametrize("rank", [2, 3])
def test_separable_terms_find_a_low_rank_two_dimensional_kernel(rank, rng):
    kernel = sum(outer(rng.standard_normal(7), rng.standard_normal(6)) for _ in range(rank))
    terms = separable_terms(kernel)
    assert terms is not None
    assert len(terms) == rank
    np.testing.assert_allclose(rebuild(terms), kernel, rtol=0, atol=SEPARABLE_RTOL * np.abs(kernel).sum())


@pytest.mark.parametrize("shape", [(3, 3), (5, 5), (3, 3, 3), (4, 2, 3)])
def test_separable_terms_reject_a_dense_random_kernel(shape, rng):
    assert separable_terms(rng.random(shape)) is None


def test_separable_terms_reject_an_all_zero_kernel():
    assert separable_terms(np.zeros((3, 3))) is None


def test_separable_terms_trust_true_factors_and_ignore_false_ones():
    factors = (np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0]))
    kernel = outer(*factors)
    (term,) = separable_terms(kernel, factors)
    assert term.coef == 1.0
    for vector, factor in zip(term.vectors, factors, strict=True):
        np.testing.assert_array_equal(vector, factor)
    wrong = (np.array([1.0, 1.0, 1.0]), np.array([-1.0, 0.0, 1.0]))
    terms = separable_terms(kernel, wrong)
    np.testing.assert_allclose(rebuild(terms), kernel, atol=1e-12)


@pytest.mark.parametrize("method", ["direct", "fft"])
def test_choose_method_keeps_a_requested_method(method, rng):
    weights = rng.random((3, 3))
    assert choose_method(method, weights, None, (10, 10), (0, 1)) == (method, "requested")


@pytest.mark.parametrize(
    ("kernel_shape", "block_shape"),
    [((3, 3), (20, 20)), ((15, 15), (200, 200)), ((31,), (4, 500)), ((5, 5, 5), (30, 30, 30))],
)
@pytest.mark.parametrize("separable", [True, False])
def test_auto_chooses_an_exact_method_and_says_why(kernel_shape, block_shape, separable, rng):
    weights = outer(*(rng.random(n) for n in kernel_shape)) if separable else rng.random(kernel_shape)
    terms = separable_terms(weights)
    axes = tuple(range(len(block_shape) - len(kernel_shape), len(block_shape)))
    method, reason = choose_method("auto", weights, terms, block_shape, axes)
    costs = estimate_costs(weights, terms, block_shape, axes)
    assert method in set(METHODS) - {"auto"}
    assert method != "separable" or terms is not None
    assert costs[method] == min(costs.values())
    assert reason.startswith("cheapest estimate per block: ")
    for name in costs:
        assert f"{name} " in reason
    assert all(seconds > 0 for seconds in costs.values())


def test_separable_method_on_a_dense_kernel_is_an_error_that_says_so(rng, exploding):
    kernel = rng.random((3, 3))
    match = r"method='separable' needs a separable kernel, and this \(3, 3\) kernel is not a sum"
    with pytest.raises(MethodError, match=match):
        choose_method("separable", kernel, separable_terms(kernel), (10, 10), (0, 1))
    with pytest.raises(MethodError, match=match) as caught:
        convflow.correlate(exploding(), kernel, method="separable")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(MethodError, match=match):
        convflow.convolve(np.ones((5, 5)), kernel, method="separable")


@pytest.mark.parametrize("method", ["fast", "Direct", None, "fftw"])
def test_unknown_method_is_an_error_that_lists_the_methods(method, exploding):
    with pytest.raises(
        ArgumentError, match=rf"method={method!r} is not a method; use one of auto, direct, separable, fft"
    ):
        convflow.convolve(exploding(), np.ones(3), method=method)


def valid_reference(block: np.ndarray, weights: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The valid part of scipy's correlation of the whole block."""
    full = ndi.correlate(block, weights, mode="constant", axes=axes)
    index = [slice(None)] * block.ndim
    for axis, n in zip(axes, weights.shape, strict=True):
        index[axis] = slice(n // 2, block.shape[axis] - (n - 1) + n // 2)
    return full[tuple(index)]


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
@pytest.mark.parametrize("kernel_shape", [(3, 4), (9, 9), (1, 6)])  # (9, 9) is past the 64-tap path
def test_correlate_block_is_the_valid_correlation_for_every_method(method, kernel_shape, rng):
    block = rng.standard_normal((4, 12, 13))
    weights = outer(*(rng.standard_normal(n) for n in kernel_shape))
    terms = separable_terms(weights)
    result = correlate_block(block, weights, terms, (1, 2), method, np.dtype(np.float64))
    expected = valid_reference(block, weights, (1, 2))
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12 * np.abs(weights).sum() * 4)


KERNELS = {
    "separable-5x4": lambda rng: outer(rng.standard_normal(5), rng.standard_normal(4)),
    "box-4x3": lambda rng: np.full((4, 3), 1 / 12),  # constant vectors: the running-sum pass
    "dense-3x3": lambda rng: rng.standard_normal((3, 3)),
    "dense-9x9": lambda rng: rng.standard_normal((9, 9)),  # more than 64 taps
}
SEPARABLE_KERNELS = ("separable-5x4", "box-4x3")


# A dense kernel is an error with method='separable' (tested above).
METHOD_KERNELS = [
    (method, kernel)
    for method in METHODS
    for kernel in KERNELS
    if method != "separable" or kernel in SEPARABLE_KERNELS
]


@pytest.mark.parametrize("chunks", [None, (3, 4), 1], ids=["numpy", "ragged", "size-1"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("method", "kernel"), METHOD_KERNELS)
def test_every_method_matches_scipy(method, kernel, op, chunks, rng):
    image = rng.standard_normal((9, 10))
    weights = KERNELS[kernel](rng)
    assert_filter_matches_scipy(op, image, weights, chunks=chunks, mode="constant", cval=2.0, method=method)


@pytest.mark.parametrize(("method", "kernel"), METHOD_KERNELS)
def test_every_method_meets_the_float32_tolerance(method, kernel, rng):
    image = (rng.standard_normal((20, 23)) * 100).astype(np.float32)
    weights = KERNELS[kernel](rng)
    assert_filter_matches_scipy("convolve", image, weights, chunks=(8, 7), mode="mirror", method=method)


@pytest.mark.parametrize("rank", [2, 3])
def test_separable_method_matches_scipy_on_a_low_rank_kernel(rank, rng):
    image = rng.standard_normal((11, 12))
    kernel = sum(outer(rng.standard_normal(5), rng.standard_normal(6)) for _ in range(rank))
    for op in OPS:
        assert_filter_matches_scipy(op, image, kernel, chunks=(4, 5), mode="wrap", method="separable")


def test_separable_method_matches_scipy_on_a_rank_one_volume_and_a_line(rng):
    image = rng.standard_normal((5, 6, 7))
    volume = outer(rng.standard_normal(3), rng.standard_normal(2), rng.standard_normal(4))
    assert_filter_matches_scipy("convolve", image, volume, chunks=2, method="separable", mode="nearest")
    line = rng.standard_normal(4)
    assert_filter_matches_scipy("correlate", image, line, chunks=2, method="separable", axes=(1,))


class FactoredKernel:
    """A kernel object that knows its factors, as convflow.kernels objects may."""

    def __init__(self, factors):
        self.factors = tuple(np.asarray(f, dtype=np.float64) for f in factors)

    def __array__(self, dtype=None, copy=None):
        return outer(*self.factors).astype(dtype or np.float64)


def test_kernel_object_factors_are_used_and_a_false_claim_changes_nothing(rng):
    image = rng.standard_normal((8, 9))
    true = FactoredKernel([rng.standard_normal(3), rng.standard_normal(4)])
    liar = FactoredKernel([rng.standard_normal(3), rng.standard_normal(4)])
    liar.factors = (liar.factors[0][::-1], liar.factors[1])  # no longer the kernel's factors
    for kernel in (true, liar):
        values = np.asarray(kernel)
        for op in OPS:
            expected = getattr(ndi, op)(image, values)
            for method in ("separable", "auto"):
                result = getattr(convflow, op)(image, kernel, method=method)
                np.testing.assert_allclose(result, expected, rtol=0, atol=1e-9 * np.abs(values).sum() * 4)


@pytest.mark.parametrize("chunks", [None, (3, 4)], ids=["numpy", "dask"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("method", METHODS)
def test_nan_and_inf_spread_exactly_as_in_scipy_for_every_method(method, op, chunks, rng):
    image = rng.standard_normal((9, 10))
    image[0, 0] = image[4, 5] = image[8, 9] = np.nan
    image[2, 7] = np.inf
    image[6, 2] = -np.inf
    # Zero weights: scipy skips them, so a NaN does not spread through them.
    kernel = outer([1.0, 0.0, 2.0], [1.0, 2.0, 0.0, -1.0])
    result = assert_filter_matches_scipy(op, image, kernel, chunks=chunks, method=method)
    assert np.isnan(result).sum() < result.size // 2  # spread by the kernel, not smeared by an FFT
