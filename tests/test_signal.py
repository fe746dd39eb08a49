"""convflow.signal against scipy.signal and numpy on the whole array: chunkings, modes, methods (#13)."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pytest
import scipy.signal
from _oracle import assert_matches_scipy, spec_compute_dtype
from hypothesis import given, settings
from hypothesis import strategies as st

import convflow
from convflow import kernels
from convflow import signal as cs
from convflow.engine import METHODS
from convflow.errors import ArgumentError, ImageError, KernelError, MethodError, ModeError

SHAPES = ("full", "same", "valid")
# scipy.signal's boundaries, and np.pad's name for the extension each makes.
BOUNDARIES = {"fill": "constant", "wrap": "wrap", "symm": "symmetric"}
FILLVALUE = 0.5


def edge_chunks(chunks: tuple[int, ...], grow: tuple[int, int], trim: tuple[int, int]) -> tuple[int, ...]:
    """Chunks grown at the outer edges, then trimmed there, as dask's slicing drops emptied chunks."""
    grown = list(chunks)
    grown[0] += grow[0]
    grown[-1] += grow[1]
    for end, amount in ((0, trim[0]), (-1, trim[1])):
        while amount:
            taken = min(grown[end], amount)
            grown[end] -= taken
            amount -= taken
            if not grown[end]:
                grown.pop(end)
    return tuple(grown)


def signal_chunks(
    chunks: tuple[tuple[int, ...], ...], kernel_shape: tuple[int, ...], mode: str, op: str
) -> Any:
    """The chunks SPEC promises a dask result: the input's, grown (full) or trimmed (valid) at the edges."""
    if mode == "same":
        return chunks
    result = []
    offset = len(chunks) - len(kernel_shape)
    for axis, axis_chunks in enumerate(chunks):
        n = kernel_shape[axis - offset] if axis >= offset else 1
        # Where the filter's centre sits: correlate2d centres even axes one sample early.
        centre = (n - 1) // 2 if op == "correlate2d" else n // 2
        if mode == "full":
            result.append(edge_chunks(axis_chunks, (n - 1, n - 1), (centre, n - 1 - centre)))
        else:
            result.append(edge_chunks(axis_chunks, (0, 0), (centre, n - 1 - centre)))
    return tuple(result)


def padded_reference(
    op: str, x: np.ndarray, k: np.ndarray, mode: str, boundary: str, fillvalue: float
) -> Any:
    """scipy.signal's answer for any boundary in N-D: pad as the boundary says, take the valid part.

    scipy.signal.convolve/correlate have only zero filling; their 'full'
    result of the padded image, cropped, is the answer with any boundary.
    tests check it against convolve2d/correlate2d in 2-D.
    """
    reach = [n - 1 for n in k.shape]
    pad = [(r, r) for r in reach]
    options = {"constant_values": fillvalue} if boundary == "fill" else {}
    padded = np.pad(x.astype(np.float64), pad, mode=BOUNDARIES[boundary], **options)
    flipped = k[(slice(None, None, -1),) * k.ndim] if op == "convolve" else k
    full = scipy.signal.correlate(padded, flipped.astype(np.float64), mode="valid", method="direct")
    if mode == "full":
        return full
    if mode == "valid":
        return full[tuple(slice(r, f - r) for r, f in zip(reach, full.shape, strict=True))]
    # 'same': where the full result is cut; correlate2d cuts even axes one sample later.
    starts = [n // 2 if op == "correlate2d" else (n - 1) // 2 for n in k.shape]
    return full[tuple(slice(s, s + m) for s, m in zip(starts, x.shape, strict=True))]


def check(
    op: str,
    image: np.ndarray,
    kernel: Any,
    mode: str,
    expected: np.ndarray,
    *,
    chunks: Any = None,
    boundary: str = "fill",
    fillvalue: float = 0.0,
    method: str = "auto",
) -> np.ndarray:
    """Run convflow.signal.`op` (on dask blocks of `chunks`, or numpy when None) and check it."""
    before = image.copy()
    source = image if chunks is None else da.from_array(image, chunks=chunks)
    result = getattr(cs, op)(source, kernel, mode, boundary, fillvalue, method)
    name = op.removesuffix("2d")
    want = None if chunks is None else signal_chunks(source.chunks, np.shape(kernel), mode, op)
    computed = assert_matches_scipy(
        result,
        expected,
        kernel=kernel,
        image=source,
        cval=fillvalue if boundary == "fill" else 0.0,
        compute_dtype=spec_compute_dtype(image.dtype),
        chunks=want,
    )
    np.testing.assert_array_equal(image, before, err_msg=f"convflow.signal.{name} modified its input")
    return computed


# -- 2-D: scipy.signal.convolve2d / correlate2d, every mode x boundary ---------------------------


@pytest.mark.parametrize("chunks", [None, 2, (3, 1)], ids=str)
@pytest.mark.parametrize("kernel_shape", [(3, 3), (2, 4), (4, 5), (1, 6), (9, 12)], ids=str)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("op", ["convolve2d", "correlate2d"])
def test_2d_matches_scipy_signal_for_every_mode_and_boundary(op, mode, boundary, kernel_shape, chunks, rng):
    image = rng.random((7, 9))
    kernel = rng.random(kernel_shape) - 0.3
    expected = getattr(scipy.signal, op)(image, kernel, mode, boundary, FILLVALUE)
    if mode == "valid" and kernel_shape == (9, 12):
        # The kernel is larger on every axis: scipy swaps the inputs, and so does convflow.
        source = image if chunks is None else da.from_array(image, chunks=chunks)
        result = getattr(cs, op)(source, kernel, mode, boundary, FILLVALUE)
        np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-12)
        return
    check(op, image, kernel, mode, expected, chunks=chunks, boundary=boundary, fillvalue=FILLVALUE)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("op", ["convolve", "correlate2d"])
def test_padded_reference_is_scipy_signal_in_2d(op, mode, boundary, rng):
    # The N-D oracle below, checked against scipy's own 2-D functions.
    image, kernel = rng.random((6, 7)), rng.random((3, 4))
    name = op if op.endswith("2d") else op + "2d"
    expected = getattr(scipy.signal, name)(image, kernel, mode, boundary, FILLVALUE)
    got = padded_reference(op, image, kernel, mode, boundary, FILLVALUE)
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_the_seed_example_matches_convolve2d_with_symm_same():
    kernel = np.ones((10, 10))
    kernel[:, :5] = -1  # an even 10x10 kernel
    image = np.zeros((100, 100))
    image[:50, :40] = 1
    image[50:, :60] = 1
    expected = scipy.signal.convolve2d(image, kernel, boundary="symm", mode="same")
    for chunks in (None, (32, 45)):
        check("convolve2d", image, kernel, "same", expected, chunks=chunks, boundary="symm")
    # scipy.ndimage centres the even kernel one sample further on: the 14.0.
    ndimage = convflow.convolve(image, kernel, mode="symm")
    assert np.abs(ndimage - expected).max() == pytest.approx(14.0)


# -- N-D: scipy.signal.convolve / correlate, and other boundaries ---------------------------------

ND_CASES = [
    ((12,), (4,), 5),
    ((12,), (5,), 2),
    ((5, 6, 7), (2, 3, 4), 2),
    ((5, 6, 7), (3, 1, 2), (4, 2, 3)),
    ((4, 3, 5, 6), (2, 2, 3, 1), 2),
    ((3, 4, 5), (4, 5, 6), 2),
]


@pytest.mark.parametrize(("shape", "kernel_shape", "chunks"), ND_CASES, ids=str)
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_nd_matches_scipy_signal_with_zero_fill(op, mode, shape, kernel_shape, chunks, rng):
    image = rng.random(shape)
    kernel = rng.random(kernel_shape) - 0.4
    expected = getattr(scipy.signal, op)(image, kernel, mode, method="direct")
    check(op, image, kernel, mode, expected)
    if mode == "valid" and kernel.shape != expected.shape and any(np.greater(kernel_shape, shape)):
        return  # the swapped case: the result's chunks follow the kernel, tested below
    check(op, image, kernel, mode, expected, chunks=chunks)


@pytest.mark.parametrize("boundary", ["wrap", "symm", "fill"])
@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("op", ["convolve", "correlate", "correlate2d"])
def test_nd_boundaries_match_the_padded_oracle(op, mode, boundary, rng):
    image = rng.random((5, 6, 7))
    kernel = rng.random((2, 5, 4)) - 0.5
    expected = padded_reference(op, image, kernel, mode, boundary, FILLVALUE)
    check(op, image, kernel, mode, expected, chunks=(2, 3, 2), boundary=boundary, fillvalue=FILLVALUE)


@pytest.mark.parametrize("mode", SHAPES)
@pytest.mark.parametrize("op", ["convolve", "correlate"])
@pytest.mark.parametrize(("a", "v"), [(9, 3), (9, 4), (4, 9), (5, 5), (1, 1)], ids=str)
def test_1d_matches_numpy(op, mode, a, v, rng):
    x = rng.random(a)
    k = rng.random(v)
    if mode == "same" and v > a:
        # numpy returns max(len(a), len(v)) values here; scipy.signal and convflow len(a).
        expected = getattr(scipy.signal, op)(x, k, "same", method="direct")
        assert getattr(np, op)(x, k, "same").shape == (v,)
    else:
        expected = getattr(np, op)(x, k, mode)
    check(op, x, k, mode, expected)
    if not (mode == "valid" and v > a):
        check(op, x, k, mode, expected, chunks=2)


def test_numpy_centring_of_even_kernels_is_one_sample_before_ndimage():
    x = np.arange(1, 10)
    assert np.convolve(x, [1, 2, 3, 4], "same")[:3].tolist() == [4, 10, 20]
    assert cs.convolve(x, [1, 2, 3, 4], "same")[:3].tolist() == [4, 10, 20]
    assert convflow.convolve(x, [1, 2, 3, 4], mode="constant")[:3].tolist() == [10, 20, 30]


# -- kernels larger than the image in 'valid' mode: scipy swaps the inputs -------------------------


@pytest.mark.parametrize("chunks", [None, 2])
@pytest.mark.parametrize("op", ["convolve", "correlate", "convolve2d", "correlate2d"])
def test_valid_mode_swaps_a_kernel_larger_on_every_axis_as_scipy_does(op, chunks, rng):
    image, kernel = rng.random((3, 4)), rng.random((5, 4))
    expected = getattr(scipy.signal, op)(image, kernel, "valid")
    source = image if chunks is None else da.from_array(image, chunks=chunks)
    result = getattr(cs, op)(source, kernel, "valid")
    assert isinstance(result, da.Array) == (chunks is not None)
    assert result.shape == expected.shape == (3, 1)
    np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-12)


@pytest.mark.parametrize("op", ["convolve", "correlate2d"])
def test_valid_mode_refuses_inputs_neither_of_which_is_larger(op):
    with pytest.raises(ArgumentError, match=r"in1 of shape \(3, 4\) and in2 of shape \(5, 2\)"):
        getattr(cs, op)(np.ones((3, 4)), np.ones((5, 2)), "valid")


def test_valid_mode_refuses_a_kernel_larger_than_the_image_along_a_kernel_axis():
    # A kernel with fewer axes (batch axes) does not swap: nothing would say which axes to use.
    with pytest.raises(ArgumentError, match=r"kernel is larger than the image"):
        cs.convolve(np.ones((4, 3, 5)), np.ones((4, 4)), "valid")


# -- dtypes, methods, kernels, laziness -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
@pytest.mark.parametrize("mode", SHAPES)
def test_dtypes_follow_the_compute_dtype(dtype, mode, rng):
    image = (rng.random((8, 9)) * 200).astype(dtype)
    kernel = rng.random((3, 4))
    expected = scipy.signal.convolve2d(image.astype(np.float64), kernel, mode, "symm")
    result = check("convolve2d", image, kernel, mode, expected, chunks=(3, 4), boundary="symm")
    assert result.dtype == spec_compute_dtype(dtype)


def test_an_integer_result_dtype_saturates():
    image = np.full((3, 3), 200, dtype=np.uint8)
    sharpen = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]
    result = cs.convolve2d(image, sharpen, "same", dtype=np.uint8)
    # scipy.signal on uint8 inputs wraps modulo 256; convflow clips at 255.
    assert result[0, 0] == 255
    assert result[1, 1] == 200
    assert result.dtype == np.uint8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", SHAPES)
def test_every_method_gives_scipy_signals_answer(method, mode, rng):
    image = rng.random((10, 11))
    kernel = np.outer(rng.random(4), rng.random(3))  # separable, so every method applies
    expected = scipy.signal.correlate2d(image, kernel, mode, "wrap")
    check("correlate2d", image, kernel, mode, expected, chunks=(4, 3), boundary="wrap", method=method)


def test_separable_on_a_kernel_that_is_not_is_an_error(rng):
    with pytest.raises(MethodError, match="separable"):
        cs.convolve(np.ones((6, 6)), rng.random((3, 3)), "full", method="separable")


def test_a_library_kernel_keeps_its_factors(rng):
    image = rng.random((12, 10))
    kernel = kernels.get("gaussian", sigma=1.0)
    expected = scipy.signal.convolve2d(image, np.asarray(kernel), "full", "symm")
    check("convolve2d", image, kernel, "full", expected, chunks=5, boundary="symm")


def test_a_kernel_with_fewer_axes_runs_image_by_image(rng):
    stack = rng.random((3, 7, 8))
    kernel = rng.random((4, 2))
    expected = np.stack([scipy.signal.convolve2d(image, kernel, "full", "wrap") for image in stack])
    check("convolve", stack, kernel, "full", expected, chunks=(2, 3, 3), boundary="wrap")


def test_a_dask_input_stays_lazy(exploding):
    image = exploding((6, 8), chunks=3)
    for mode in SHAPES:
        result = cs.convolve2d(image, np.ones((2, 3)), mode, "symm")
        assert isinstance(result, da.Array)
    assert cs.convolve2d(image, np.ones((2, 3)), "full").chunks == ((3, 4), (4, 3, 3))


def test_full_grows_only_the_outer_chunks():
    image = da.ones((10, 12), chunks=(4, 5))
    result = cs.convolve(image, np.ones((3, 4)), "full")
    assert result.chunks == ((5, 4, 3), (6, 5, 4))
    valid = cs.convolve(image, np.ones((3, 4)), "valid")
    assert valid.chunks == ((3, 4, 1), (3, 5, 1))


# -- the space in between ---------------------------------------------------------------------------


# 40 examples: each builds and computes a small dask graph (about 50 ms); the
# explicit cases above already cover every mode x boundary x op.
@settings(max_examples=40, deadline=None, database=None)
@given(
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    data=st.data(),
    mode=st.sampled_from(SHAPES),
    boundary=st.sampled_from(list(BOUNDARIES)),
    op=st.sampled_from(["convolve", "correlate", "correlate2d"]),
)
def test_random_shapes_and_chunkings_match_the_padded_oracle(shape, data, mode, boundary, op):
    kernel_shape = [data.draw(st.integers(1, n if mode == "valid" else n + 3)) for n in shape]
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    image = rng.random(shape)
    kernel = rng.random(kernel_shape) - 0.5
    expected = padded_reference(op, image, kernel, mode, boundary, FILLVALUE)
    check(op, image, kernel, mode, expected, chunks=chunks, boundary=boundary, fillvalue=FILLVALUE)


# -- errors name the value and the fix ------------------------------------------------------------


def test_an_unknown_mode_names_the_shapes():
    with pytest.raises(
        ArgumentError, match=r"mode='reflect' is not an output shape; use one of same, full, valid"
    ):
        cs.convolve(np.ones(5), [1.0], "reflect")


def test_an_unknown_boundary_names_scipys_names():
    with pytest.raises(ModeError, match=r"boundary='edge' is not a boundary; use one of fill, pad, symm"):
        cs.convolve2d(np.ones((3, 3)), np.ones((2, 2)), "same", "edge")


def test_ndimage_modes_work_as_boundaries(rng):
    image, kernel = rng.random((6, 5)), rng.random((3, 2))
    got = cs.correlate(image, kernel, "same", "nearest")
    np.testing.assert_allclose(got, convflow.correlate(image, kernel, mode="nearest"), atol=1e-12)


@pytest.mark.parametrize(
    ("in1", "in2", "error", "what"),
    [
        (np.ones(4, dtype=complex), [1.0], ImageError, "in1 has complex dtype complex128"),
        (np.ones(4), [1j, 1.0], KernelError, "in2 has complex dtype complex128"),
    ],
)
def test_complex_inputs_are_refused(in1, in2, error, what):
    with pytest.raises(error, match=f"{what}; convflow.signal takes real inputs only"):
        cs.correlate(in1, in2)


def test_a_ragged_kernel_is_refused():
    with pytest.raises(KernelError, match=r"in2 is not a numeric array \(rows of unequal length\?\)"):
        cs.convolve2d(np.ones((3, 3)), [[1.0, 2.0], [3.0]])


def test_a_fillvalue_must_be_real():
    with pytest.raises(ArgumentError, match=r"fillvalue=\(1\+1j\) must be a real number"):
        cs.convolve2d(np.ones((3, 3)), np.ones((2, 2)), "full", "fill", 1 + 1j)


def test_an_empty_image_is_refused():
    with pytest.raises(ImageError, match=r"in1 has shape \(0, 3\) and holds no values"):
        cs.convolve(np.ones((0, 3)), np.ones((1, 1)))


def test_scipy_names_are_the_n_d_functions():
    assert cs.convolve2d is cs.convolve
    assert cs.correlate2d is not cs.correlate  # correlate2d centres even 'same' results differently
