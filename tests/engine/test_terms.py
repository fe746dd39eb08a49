"""Sums of separable terms (_terms.py): finding them, sharing their passes, and running them exactly."""

# Issue #17, items 1-3.

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import OPS, TOLERANCE, assert_filter_matches_scipy
from hypothesis import given, settings
from hypothesis import strategies as st

import convflow
from convflow import kernels
from convflow.engine._filter import make_filter
from convflow.engine._fused import describe_stack
from convflow.engine._methods import correlate_block, correlate_direct, correlate_separable, estimate_costs
from convflow.engine._modes import MODES
from convflow.engine._terms import (
    MAX_TERMS,
    SEPARABLE_RTOL,
    Term,
    flip_terms,
    given_terms,
    plan_sum,
    separable_terms,
)


def outer(*vectors: np.ndarray) -> np.ndarray:
    result = np.array(1.0)
    for vector in vectors:
        result = np.multiply.outer(result, np.asarray(vector, dtype=np.float64))
    return result


def rebuild(terms) -> np.ndarray:
    return sum(term.coef * outer(*term.vectors) for term in terms)


def valid_reference(block: np.ndarray, weights: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The valid part of scipy's correlation of the whole block, in float64."""
    full = ndi.correlate(block.astype(np.float64), weights, mode="constant", axes=axes)
    index = [slice(None)] * block.ndim
    for axis, n in zip(axes, weights.shape, strict=True):
        index[axis] = slice(n // 2, block.shape[axis] - (n - 1) + n // 2)
    return full[tuple(index)]


# The library kernels that are sums of separable terms (or one term), with small parameters:
# odd sizes, a shorter Gaussian inside a longer one (dog), a single weight (the identity), per-axis sigmas.
SUM_KERNELS = {
    "unsharp": {"sigma": 1.0, "amount": 1.5},
    "log": {"sigma": 0.8},
    "log-per-axis": {"sigma": (0.6, 1.0)},
    "dog": {"sigma1": 0.6, "sigma2": 1.2},
    "gaussian-order": {"sigma": 0.8, "order": (1, 2)},
    "sobel": {"axis": 0},
    "prewitt": {},
    "scharr": {"axis": -1},
    "laplacian": {},
    "sharpen": {},
}


def library(label: str, ndim: int) -> kernels.Kernel:
    """The kernel of a SUM_KERNELS label, in `ndim` dimensions."""
    name = label.split("-")[0]
    params = dict(SUM_KERNELS[label])
    for key, value in params.items():
        if isinstance(value, tuple):
            params[key] = (value * 3)[:ndim]
    return kernels.get(name, ndim=ndim, **params)


# --- finding terms --------------------------------------------------------------------------


def test_given_terms_are_used_when_true_and_ignored_when_false(rng):
    g, d = rng.standard_normal(5), rng.standard_normal(5)
    true = (Term(1.0, (d, g, g)), Term(-2.0, (g, d, g)))
    weights = rebuild(true)
    assert separable_terms(weights, None, true) == true
    liar = (Term(1.0, (d, g, g)), Term(2.0, (g, d, g)))  # the sign of the second term is wrong
    found = separable_terms(weights, None, liar)
    assert found is not None
    assert found != liar
    np.testing.assert_allclose(rebuild(found), weights, rtol=0, atol=SEPARABLE_RTOL * np.abs(weights).sum())
    wrong_shape = (Term(1.0, (d[:3], g, g)),)
    assert separable_terms(weights, None, wrong_shape) != wrong_shape


def test_given_terms_read_kernel_objects_and_flip_with_the_kernel():
    k = kernels.get("dog", sigma1=1.0, sigma2=2.0, ndim=2)
    terms = given_terms(k)
    assert [t.coef for t in terms] == [1.0, -1.0]
    np.testing.assert_allclose(rebuild(terms), k.values, atol=1e-15)
    np.testing.assert_allclose(rebuild(flip_terms(terms)), np.flip(k.values), atol=1e-15)
    assert given_terms(np.ones(3)) is None


@pytest.mark.parametrize("ranks", [(2, 2, 2), (1, 2, 3), (2, 1, 1, 2)])
def test_tucker_finds_a_dense_kernel_of_low_multilinear_rank(ranks, rng):
    shape = (5, 6, 7, 4)[: len(ranks)]
    core = rng.standard_normal(ranks)
    bases = [rng.standard_normal((n, r)) for n, r in zip(shape, ranks, strict=True)]
    weights = core
    for basis in bases:
        weights = np.tensordot(weights, basis, axes=(0, 1))
    terms = separable_terms(weights)
    assert terms is not None
    assert len(terms) <= np.prod(ranks)
    np.testing.assert_allclose(rebuild(terms), weights, rtol=0, atol=SEPARABLE_RTOL * np.abs(weights).sum())


def test_tucker_finds_the_terms_of_a_dense_log_and_convflow_runs_it_as_passes(rng):
    dense = np.asarray(kernels.get("log", sigma=1.0, ndim=3))  # a plain array: no terms attached
    terms = separable_terms(dense)
    assert terms is not None
    assert len(terms) <= 8  # rank 2 on every axis: the Gaussian and its second derivative
    image = rng.standard_normal((10, 11, 12))
    assert_filter_matches_scipy("convolve", image, dense, chunks=(4, 5, 12), method="separable")


@pytest.mark.parametrize("shape", [(3, 3, 3), (4, 5, 3), (3, 3, 3, 3)])
def test_tucker_refuses_a_dense_random_kernel(shape, rng):
    assert separable_terms(rng.random(shape)) is None


def test_tucker_refuses_a_decomposition_with_too_many_terms(rng):
    # Multilinear rank (5, 5, 5) in a 6^3 kernel: 125 terms, past MAX_TERMS.
    bases = [rng.standard_normal((6, 5)) for _ in range(3)]
    weights = rng.standard_normal((5, 5, 5))
    for basis in bases:
        weights = np.tensordot(weights, basis, axes=(0, 1))
    assert MAX_TERMS < 5**3
    assert separable_terms(weights) is None


# --- sharing passes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "ndim", "passes"),
    [
        ("unsharp", {"sigma": 2.0}, 3, 3),  # the identity is a view of the block
        ("log", {"sigma": 2.0}, 3, 7),  # nine one term at a time
        ("log", {"sigma": 2.0}, 2, 4),
        ("dog", {"sigma1": 1.0, "sigma2": 2.0}, 3, 6),
        ("gaussian", {"sigma": 1.0, "order": (0, 1, 2)}, 3, 3),
        ("laplacian", {}, 3, 3),  # [1, -2, 1] once per axis; the rest are views
        ("identity", {}, 3, 0),
        ("shift", {"offset": (0, 2, -1)}, 3, 0),
    ],
)
def test_plan_shares_passes_between_terms(name, params, ndim, passes):
    assert plan_sum(given_terms(kernels.get(name, ndim=ndim, **params))).passes == passes


def test_a_shorter_gaussian_inside_a_longer_kernel_reads_only_its_own_taps():
    k = kernels.get("dog", sigma1=1.0, sigma2=2.0, ndim=1)
    plan = plan_sum((Term(1.0, k.terms[0].vectors), Term(-1.0, k.terms[1].vectors)))
    taps = sorted((g.tap.start, g.tap.weights.size, g.tap.size) for g in plan.groups)
    assert taps == [(0, 17, 17), (4, 9, 17)]


# --- running them: every method, mode and chunking, against scipy ----------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label", SUM_KERNELS)
def test_sum_kernels_match_scipy_in_every_mode_with_chunks_smaller_than_the_halo(label, mode, rng):
    kernel = library(label, 2)
    x = rng.standard_normal((11, 10))
    for op in OPS:
        assert_filter_matches_scipy(op, x, kernel, chunks=(3, 4), mode=mode, cval=1.5, method="separable")


# Ragged chunks of 3-5 along axes whose halo is up to 4 on each side (sigma 1, truncate 4).
@pytest.mark.parametrize("chunks", [None, (4, 3, 5)], ids=["numpy", "ragged-below-halo"])
@pytest.mark.parametrize("method", ["auto", "separable", "direct", "fft"])
@pytest.mark.parametrize("label", SUM_KERNELS)
def test_sum_kernels_in_3d_match_scipy_by_every_method(label, method, chunks, rng):
    kernel = library(label, 3)
    x = rng.standard_normal((9, 8, 10))
    op = "correlate" if label in ("sobel", "prewitt", "scharr") else "convolve"
    assert_filter_matches_scipy(op, x, kernel, chunks=chunks, mode="reflect", method=method)


@pytest.mark.parametrize("label", SUM_KERNELS)
def test_sum_kernels_meet_the_float32_tolerance(label, rng):
    kernel = library(label, 3)
    x = (rng.standard_normal((12, 13, 14)) * 100).astype(np.float32)
    for op in OPS:
        assert_filter_matches_scipy(op, x, kernel, chunks=(5, 6, 7), mode="nearest", method="separable")


def test_float32_sums_of_terms_that_cancel_stay_within_the_tolerance(rng):
    # A large amount makes the identity and the Gaussian nearly cancel in flat regions:
    # the float32 sum errs by about the terms' size, which the kernel's own sum|k| bounds.
    kernel = kernels.get("unsharp", sigma=1.5, amount=50.0, ndim=3)
    x = (1000.0 + rng.standard_normal((14, 15, 16))).astype(np.float32)
    assert_filter_matches_scipy("convolve", x, kernel, chunks=(7, 8, 16), method="separable")


@pytest.mark.parametrize("chunks", [None, (4, 5, 6)], ids=["numpy", "dask"])
@pytest.mark.parametrize("method", ["auto", "separable"])
@pytest.mark.parametrize("label", ["unsharp", "log", "dog", "laplacian", "gaussian-order"])
def test_nan_and_inf_spread_through_sums_of_terms_exactly_as_in_scipy(label, method, chunks, rng):
    kernel = library(label, 3)
    x = rng.standard_normal((10, 11, 12))
    x[0, 0, 0] = x[5, 5, 5] = np.nan
    x[2, 8, 3] = np.inf
    x[8, 1, 10] = -np.inf
    result = assert_filter_matches_scipy("convolve", x, kernel, chunks=chunks, method=method)
    assert np.isfinite(result).any()


def test_a_non_finite_sum_of_terms_is_recomputed_the_direct_way():
    # unsharp's identity reads only the centre; its Gaussian reads every tap: a NaN in the
    # padded block reaches the result through the Gaussian term, and only the direct way
    # spreads it exactly as scipy does (not through a whole GEMM tile).
    kernel = kernels.get("unsharp", sigma=1.0, ndim=2)
    filt = make_filter(np.float64, 2, kernel, flip=True, mode="reflect", cval=0.0, origin=0,
                       axes=None, method="separable", dtype=None)  # fmt: skip
    block = np.random.default_rng(0).standard_normal((30, 31))
    block[10, 12] = np.nan
    block[20, 3] = -np.inf
    result = correlate_block(block, filt.weights, filt.terms, filt.axes, "separable", np.dtype(np.float64))
    expected = correlate_direct(block, filt.weights, filt.axes, np.dtype(np.float64))
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


def test_sums_of_terms_match_the_scipy_filters_that_define_them(rng):
    x = rng.standard_normal((12, 13, 14))
    image = da.from_array(x, chunks=(5, 6, 7))
    sigma = 1.2
    cases = {
        "log": (kernels.log(sigma, ndim=3), ndi.gaussian_laplace(x, sigma)),
        "unsharp": (kernels.unsharp(sigma, 0.7, ndim=3), x + 0.7 * (x - ndi.gaussian_filter(x, sigma))),
        "dog": (kernels.dog(1.0, 2.0, ndim=3), ndi.gaussian_filter(x, 1.0) - ndi.gaussian_filter(x, 2.0)),
        "gaussian-order": (
            kernels.gaussian(sigma, order=(2, 0, 1), ndim=3),
            ndi.gaussian_filter(x, sigma, order=(2, 0, 1)),
        ),
        "laplacian": (kernels.laplacian(ndim=3), ndi.laplace(x)),
    }
    for name, (kernel, expected) in cases.items():
        result = convflow.convolve(image, kernel, method="separable").compute()
        bound = TOLERANCE[np.dtype(np.float64)] * np.abs(kernel.values).sum() * np.abs(x).max()
        np.testing.assert_allclose(result, expected, rtol=0, atol=bound, err_msg=name)
    for axis, name in enumerate(("sobel", "prewitt")):
        result = convflow.correlate(image, kernels.get(name, axis=axis, ndim=3), method="separable").compute()
        expected = getattr(ndi, name)(x, axis=axis)
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


# --- the cost model --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [("unsharp", {"sigma": 2.0}), ("log", {"sigma": 2.0}), ("dog", {"sigma1": 1.0, "sigma2": 2.0})],
)
def test_auto_runs_3d_sums_of_terms_as_passes_and_says_so(name, params):
    kernel = kernels.get(name, ndim=3, **params)
    filt = make_filter(np.float32, 3, kernel, flip=True, mode="nearest", cval=0.0, origin=0,
                       axes=None, method="auto", dtype=None)  # fmt: skip
    (only,) = describe_stack([filt], ((128,) * 4,) * 3)
    assert only.methods == ("separable",)
    passes = plan_sum(filt.terms).passes
    assert f"separable ({len(filt.terms)} terms, {passes} passes)" in only.reasons[0]


def test_cost_of_a_sum_grows_with_its_passes_not_its_terms():
    block, axes = (144, 144, 144), (0, 1, 2)
    costs = {}
    for name, params in (("gaussian", {"sigma": 2.0}), ("unsharp", {"sigma": 2.0}), ("log", {"sigma": 2.0})):
        k = kernels.get(name, ndim=3, **params)
        costs[name] = estimate_costs(
            k.values, separable_terms(k.values, k.factors, given_terms(k)), block, axes
        )
    gaussian, unsharp, log = (costs[n]["separable"] for n in ("gaussian", "unsharp", "log"))
    assert gaussian < unsharp < 1.5 * gaussian  # one more add, no pass
    assert 2 * gaussian < log < 3 * gaussian  # seven passes of three terms, not nine


# --- random sums: shared prefixes, shared last vectors, zeros at the ends, single weights ---------


@st.composite
def random_sums(draw: st.DrawFn) -> tuple[tuple[Term, ...], tuple[int, ...]]:
    """A few terms over 1-3 axes whose vectors repeat between terms, so passes are shared."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pools = []
    for n in shape:
        pool = []
        for _ in range(draw(st.integers(1, 3))):
            vector = rng.standard_normal(n)
            first, last = sorted(rng.integers(0, n, 2))
            vector[:first] = 0.0  # zeros at the ends: a shorter window
            vector[last + 1 :] = 0.0
            if rng.random() < 0.3:  # a single weight: a view
                vector[:] = 0.0
                vector[rng.integers(0, n)] = 1.0
            pool.append(vector)
        pools.append(pool)
    terms = tuple(
        Term(float(rng.standard_normal()), tuple(pool[rng.integers(0, len(pool))] for pool in pools))
        for _ in range(draw(st.integers(1, 5)))
    )
    return terms, shape


# 60 examples: each is a few milliseconds, and together they cover one to five terms with
# every mix of shared and distinct vectors on 1-3 axes without lengthening the suite.
@settings(max_examples=60, deadline=None)
@given(case=random_sums(), dtype=st.sampled_from([np.float64, np.float32]))
def test_random_sums_of_terms_are_the_valid_correlation_of_their_dense_kernel(case, dtype):
    terms, kernel_shape = case
    weights = rebuild(terms)
    ndim = len(kernel_shape)
    block = np.random.default_rng(ndim).standard_normal((*(n + 4 for n in kernel_shape), 3))
    axes = tuple(range(ndim))
    result = correlate_separable(block.astype(dtype), terms, axes, np.dtype(dtype))
    expected = valid_reference(block, weights, axes)
    assert result.shape == expected.shape
    assert result.dtype == dtype
    # Random terms may cancel far more than a library kernel's: bound by the terms' own size.
    scale = sum(abs(t.coef) * np.prod([np.abs(v).sum() for v in t.vectors]) for t in terms)
    bound = TOLERANCE[np.dtype(dtype)] * scale * np.abs(block).max()
    np.testing.assert_allclose(result, expected, rtol=0, atol=bound)


def test_a_pass_says_how_many_blocks_a_sum_of_terms_holds_at_once():
    def held(name: str, **params: object) -> int:
        filt = make_filter(np.float32, 3, kernels.get(name, ndim=3, **params), flip=True, mode="reflect",
                           cval=0.0, origin=0, axes=None, method="separable", dtype=None)  # fmt: skip
        (only,) = describe_stack([filt], ((64, 64),) * 3)
        return only.blocks_held

    assert held("gaussian", sigma=1.0) == 3  # the block, a pass's input and its output
    assert held("unsharp", sigma=1.0) == 3  # the identity is a view of the block
    assert held("log", sigma=1.0) > 3  # three partial results meet before the last axis


@pytest.mark.parametrize("origin", [0, (-1, 1), (1, 0)])
@pytest.mark.parametrize("op", OPS)
def test_a_custom_kernel_with_terms_of_even_size_matches_scipy_at_every_origin(op, origin, rng):
    ramp, bump, edge = (
        np.array([1.0, 2.0, 3.0, 4.0]),
        np.array([0.0, 1.0, 0.0, 0.0]),
        np.array([0.0, -1.0, 1.0]),
    )
    terms = [(2.0, (ramp, edge)), (-0.5, (bump, np.array([0.0, 1.0, 0.0])))]
    values = 2.0 * np.outer(ramp, edge) - 0.5 * np.outer(bump, [0.0, 1.0, 0.0])
    kernel = kernels.Kernel(values, terms=terms)
    x = rng.standard_normal((9, 10))
    for mode in ("reflect", "constant", "wrap"):
        assert_filter_matches_scipy(
            op, x, kernel, chunks=(2, 3), mode=mode, origin=origin, method="separable"
        )
