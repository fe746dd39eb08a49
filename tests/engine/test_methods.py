"""Block methods (_methods.py): separable terms, the method choice, and every method against scipy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import OPS, TOLERANCE, assert_filter_matches_scipy

import convflow
from convflow.engine._methods import (
    GEMM_TILE,
    METHODS,
    SEPARABLE_RTOL,
    TAPS_MAX,
    Term,
    _pass_1d,
    _pass_gemm,
    check_method,
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
        check_method("separable", kernel, separable_terms(kernel))
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
    "box-4x3": lambda rng: np.full((4, 3), 1 / 12),  # constant vectors
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


def valid_correlate1d(x: np.ndarray, vector: np.ndarray, axis: int) -> np.ndarray:
    """The valid part of scipy's correlate1d, summed in float64."""
    n = vector.size
    full = ndi.correlate1d(x.astype(np.float64), vector, axis=axis, mode="constant")
    index = [slice(None)] * x.ndim
    index[axis] = slice(n // 2, n // 2 + x.shape[axis] - (n - 1))
    return full[tuple(index)]


def assert_pass_matches(result: np.ndarray, expected: np.ndarray, vector: np.ndarray, x: np.ndarray) -> None:
    """Within the spec's tolerance of the result's dtype, with NaN and inf where scipy has them."""
    largest = np.abs(x[np.isfinite(x)]).max(initial=0.0)
    bound = TOLERANCE[result.dtype] * np.abs(vector).sum() * largest
    assert result.shape == expected.shape
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(result, expected, rtol=0, atol=bound)


# One long axis (57-61) per case, the one the pass runs along: 1-D to 4-D, first, middle and last.
PASS_CASES = [
    ((61,), 0),
    ((58, 5), 0),
    ((5, 58), 1),
    ((3, 57, 4), 1),
    ((3, 4, 57), 2),
    ((57, 2, 3, 5), 0),
    ((2, 59, 3, 4), 1),
    ((2, 3, 59, 4), 2),
    ((2, 3, 4, 59), 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 3, 16, 17, 40])
@pytest.mark.parametrize(("shape", "axis"), PASS_CASES)
def test_gemm_pass_is_scipys_valid_correlate1d_along_every_axis(shape, axis, n, dtype, rng):
    vector = rng.standard_normal(n)
    x = rng.standard_normal(shape).astype(dtype)
    # Whole lines, and lines that leave 1, a part of one, or exactly one tile of outputs.
    for valid in (shape[axis] - n + 1, 1, 5, GEMM_TILE):
        index = [slice(None)] * x.ndim
        index[axis] = slice(0, valid + n - 1)
        part = x[tuple(index)]
        expected = valid_correlate1d(part, vector, axis)
        for pass_1d in (_pass_gemm, _pass_1d):
            result = pass_1d(part, vector, axis, np.dtype(dtype))
            assert result.dtype == dtype
            assert_pass_matches(result, expected, vector, part)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_pass_reads_non_contiguous_blocks(dtype, rng):
    vector = rng.standard_normal(5)
    x = rng.standard_normal((30, 40, 20)).astype(dtype)
    for view in (x[::2, 1::3], x.transpose(2, 0, 1), x[:, :, ::-1]):
        for axis in range(3):
            expected = valid_correlate1d(view, vector, axis)
            assert_pass_matches(_pass_1d(view, vector, axis, np.dtype(dtype)), expected, vector, view)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1])
def test_separable_block_spreads_nan_and_inf_as_scipy_where_a_gemm_would_fill_whole_tiles(axis, dtype, rng):
    block = rng.standard_normal((40, 45)).astype(dtype)
    block[3, 4] = block[30, 40] = np.nan
    block[20, 10] = np.inf
    block[21, 33] = -np.inf
    vector = np.array([0.0, 1.0, -2.0, 0.0])  # zero weights: scipy skips them, a GEMM does not
    result = correlate_block(block, vector, separable_terms(vector), (axis,), "separable", np.dtype(dtype))
    expected = valid_reference(block.astype(np.float64), vector, (axis,))
    assert_pass_matches(result, expected, vector, block)
    assert 0 < (~np.isfinite(result)).sum() <= 8


def test_separable_block_redoes_a_float32_gemm_that_overflows_with_scipys_float64_sums():
    block = np.full((3, 40), 2e38, dtype=np.float32)
    vector = np.array([1.0, 1.0, -1.0])
    terms = (Term(1.0, (vector,)),)
    # Precondition: the float32 GEMM sums 2e38 + 2e38 before subtracting.
    with np.errstate(over="ignore"):
        assert np.isinf(_pass_gemm(block, vector, 1, np.dtype(np.float32))).all()
    result = correlate_block(block, vector, terms, (1,), "separable", np.dtype(np.float32))
    np.testing.assert_array_equal(result, np.full((3, 38), 2e38, dtype=np.float32))


@pytest.mark.parametrize("constant", [True, False], ids=["box", "general"])
def test_float32_vectors_past_taps_max_keep_scipys_float64_sums(constant, rng):
    n = TAPS_MAX + 6
    vector = np.full(n, 1.0 / n) if constant else rng.standard_normal(n)
    x = (rng.standard_normal((6, n + 30)) * 100).astype(np.float32)
    result = _pass_1d(x, vector, 1, np.dtype(np.float32))
    if constant:  # a running sum
        full = ndi.uniform_filter1d(x, n, axis=1, output=np.float32, mode="constant")
    else:
        full = ndi.correlate1d(x, vector, axis=1, output=np.float32, mode="constant")
    np.testing.assert_array_equal(result, full[:, n // 2 : n // 2 + 31])
    assert_pass_matches(result, valid_correlate1d(x, vector, 1), vector, x)


@pytest.mark.parametrize("method", ["separable", "fft"])
def test_correlate_block_recomputes_a_non_finite_result_the_direct_way(method, rng):
    block = rng.standard_normal((9, 12, 13))
    block[0, 0, 0] = block[4, 11, 12] = np.nan  # corners: only zero weights reach them in scipy
    block[5, 6, 0] = np.inf
    block[2, 3, 4] = -np.inf
    weights = outer([0.0, 1.0, 2.0], [0.0, 1.0, 3.0, 0.0])
    result = correlate_block(block, weights, separable_terms(weights), (1, 2), method, np.dtype(np.float64))
    expected = valid_reference(block, weights, (1, 2))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12 * np.abs(weights).sum() * 4)
    assert np.isfinite(result[0]).all()
    assert not np.isfinite(result).all()


@pytest.mark.parametrize("op", OPS)
def test_separable_matches_scipy_when_a_float32_pass_overflows_in_between(op, rng):
    # The first pass sums three values near 3e38 past float32's 3.4e38; the
    # second takes differences, so scipy's float64 result is finite, and so
    # are the direct tap sums, which alternate in sign.
    image = rng.uniform(2.9e38, 3e38, (12, 13)).astype(np.float32)
    kernel = outer([1.0, 1.0, 1.0], [1.0, -1.0])
    result = assert_filter_matches_scipy(op, image, kernel, chunks=(5, 6), mode="nearest", method="separable")
    assert np.isfinite(result).all()


@pytest.mark.parametrize("constant", [True, False], ids=["box", "general"])
def test_separable_matches_scipy_for_float32_vectors_past_taps_max_with_nan(constant, rng):
    n = TAPS_MAX + 6
    image = (rng.standard_normal((7, 3 * n)) * 10).astype(np.float32)
    kernel = np.full(n, 1.0 / n) if constant else rng.standard_normal(n)
    assert_filter_matches_scipy("correlate", image, kernel, chunks=(4, n), mode="wrap", method="separable")
    image[2, n] = np.nan  # a running sum would carry it to the end of the line
    result = assert_filter_matches_scipy("convolve", image, kernel, chunks=(4, n), method="separable")
    assert np.isfinite(result[[0, 1, 3, 4, 5, 6]]).all()


def test_separable_blocks_in_two_threads_at_once_match_one_at_a_time(rng):
    blocks = [rng.random((40, 41, 42), dtype=np.float32) for _ in range(6)]
    vectors = (rng.random(9), rng.random(5), rng.random(17))
    weights = outer(*vectors)
    terms = (Term(1.0, vectors),)

    def block_math(block: np.ndarray) -> np.ndarray:
        return correlate_block(block, weights, terms, (0, 1, 2), "separable", np.dtype(np.float32))

    one_at_a_time = [block_math(block) for block in blocks]
    with ThreadPoolExecutor(2) as pool:
        at_once = list(pool.map(block_math, blocks, timeout=60))
    for serial, threaded in zip(one_at_a_time, at_once, strict=True):
        np.testing.assert_array_equal(threaded, serial)
