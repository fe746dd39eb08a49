"""convolve and correlate (_convolve.py) against scipy.ndimage on the whole array (#2 items 5 and 6)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import OPS, ComputedTooEarly, assert_filter_matches_scipy
from hypothesis import given, settings
from hypothesis import strategies as st

import convflow
from convflow.engine import METHODS
from convflow.engine._modes import ALIASES, MODES
from convflow.errors import ArgumentError, ImageError, KernelError

# image shape, kernel shape: one of each dimensionality the spec names, and one more.
SHAPES = {
    "1d": ((13,), (3,)),
    "2d": ((7, 9), (3, 2)),
    "3d": ((4, 5, 6), (3, 2, 3)),
    "4d": ((2, 3, 4, 5), (2, 3, 1, 2)),
}
CHUNKINGS = {"numpy": None, "one-chunk": -1, "ragged": 4, "size-1": 1}


@pytest.mark.parametrize("origin", ["centred", "lowest"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize(("image_shape", "kernel_shape"), SHAPES.values(), ids=SHAPES.keys())
def test_matches_scipy_from_one_to_four_dimensions(image_shape, kernel_shape, chunks, op, origin, rng):
    image = rng.standard_normal(image_shape)
    kernel = rng.standard_normal(kernel_shape)
    # The lowest origin puts the whole halo (up to 2) after each chunk of 1.
    origins = 0 if origin == "centred" else tuple(-(n // 2) for n in kernel_shape)
    assert_filter_matches_scipy(op, image, kernel, chunks=chunks, mode="mirror", origin=origins)


# The impulse at index 3 of 8 zeros, filtered with constant mode: the output is
# the kernel as each op places it.  scipy centres a kernel of n at n // 2 + origin;
# convolve flips it, negates the origin, and shifts even sizes one more.
FLIP_TABLE = [
    ("correlate", [1, 2, 3], 0, [0, 0, 3, 2, 1, 0, 0, 0]),
    ("convolve", [1, 2, 3], 0, [0, 0, 1, 2, 3, 0, 0, 0]),
    ("correlate", [1, 2, 3], 1, [0, 0, 0, 3, 2, 1, 0, 0]),
    ("convolve", [1, 2, 3], 1, [0, 1, 2, 3, 0, 0, 0, 0]),
    ("correlate", [1, 2, 3, 4], 0, [0, 0, 4, 3, 2, 1, 0, 0]),
    ("convolve", [1, 2, 3, 4], 0, [0, 1, 2, 3, 4, 0, 0, 0]),
    ("correlate", [1, 2, 3, 4], 1, [0, 0, 0, 4, 3, 2, 1, 0]),
    ("convolve", [1, 2, 3, 4], 1, [1, 2, 3, 4, 0, 0, 0, 0]),
    ("correlate", [1, 2, 3, 4], -2, [4, 3, 2, 1, 0, 0, 0, 0]),
    ("convolve", [1, 2, 3, 4], -2, [0, 0, 0, 1, 2, 3, 4, 0]),
]


@pytest.mark.parametrize("chunks", [None, 2], ids=["numpy", "chunks-of-2"])
@pytest.mark.parametrize(("op", "kernel", "origin", "expected"), FLIP_TABLE)
def test_flip_and_even_size_origin_shift_follow_the_hand_table(op, kernel, origin, expected, chunks):
    impulse = np.zeros(8)
    impulse[3] = 1.0
    np.testing.assert_array_equal(getattr(ndi, op)(impulse, kernel, mode="constant", origin=origin), expected)
    source = impulse if chunks is None else da.from_array(impulse, chunks=chunks)
    result = getattr(convflow, op)(source, kernel, mode="constant", origin=origin)
    if chunks is not None:
        result = result.compute(scheduler="synchronous")
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("origin", [(0, 0), (1, -2), (-1, 1)])
def test_convolving_equals_correlating_with_the_kernel_flipped_on_every_axis(origin, rng):
    image = rng.standard_normal((8, 9))
    kernel = rng.standard_normal((3, 4))  # odd, even
    # The even axis needs scipy's extra shift so the flipped kernel keeps its centre.
    flipped_origin = tuple(-o - (1 - n % 2) for o, n in zip(origin, kernel.shape, strict=True))
    convolved = convflow.convolve(image, kernel, origin=origin)
    correlated = convflow.correlate(image, np.flip(kernel), origin=flipped_origin)
    np.testing.assert_allclose(convolved, correlated, rtol=0, atol=1e-12)
    np.testing.assert_allclose(convolved, ndi.convolve(image, kernel, origin=origin), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("image_shape", "kernel_shape", "axes"),
    [
        ((4, 6, 7), (3, 2), None),  # the last two axes
        ((4, 6, 7), (3, 2), (1, 2)),
        ((4, 6, 7), (3, 2), (0, 2)),
        ((4, 6, 7), (3, 2), (-3, -1)),
        ((4, 6, 7), (3, 2), (0, -1)),
        ((4, 6, 7), (3, 2), [0, 1]),
        ((4, 6, 7), (4,), 1),
        ((4, 6, 7), (4,), (-3,)),
        ((4, 6, 7), (3, 2, 2), (0, 1, 2)),
        ((2, 3, 5, 6), (2, 3), (1, 3)),
        ((2, 3, 5, 6), (3,), None),
    ],
)
@pytest.mark.parametrize("op", OPS)
def test_kernel_runs_over_the_given_or_the_last_axes_like_scipy(image_shape, kernel_shape, axes, op, rng):
    image = rng.standard_normal(image_shape)
    kernel = rng.standard_normal(kernel_shape)
    origin = tuple((n - 1) // 2 for n in kernel_shape)
    chunks = (1, 2, 3, 2)[: len(image_shape)]
    assert_filter_matches_scipy(op, image, kernel, chunks=chunks, mode="wrap", origin=origin, axes=axes)


def test_batch_axes_borrow_nothing_from_neighbouring_batches(exploding, rng):
    good = rng.standard_normal((1, 6, 8))
    image = da.concatenate(
        [da.from_array(good, chunks=(1, 3, 3)), exploding((2, 6, 8), chunks=(1, 3, 3))], axis=0
    )
    kernel = rng.standard_normal((3, 3))
    result = convflow.convolve(image, kernel, mode="nearest")
    # Batch 0 computes alone: no block of batches 1 and 2 is ever read.
    expected = ndi.convolve(good[0], kernel, mode="nearest")
    np.testing.assert_allclose(result[0].compute(scheduler="synchronous"), expected, rtol=0, atol=1e-12)
    with pytest.raises(ComputedTooEarly):
        result[1].compute(scheduler="synchronous")


def test_numpy_in_gives_numpy_out_and_array_likes_are_accepted(rng):
    kernel = np.array([1.0, -2.0, 1.0])
    for image in ([1, 4, 9, 16, 25], (1.0, 4.0, 9.0, 16.0, 25.0), np.array([1, 4, 9, 16, 25])):
        result = convflow.correlate(image, kernel, mode="nearest")
        assert type(result) is np.ndarray
        np.testing.assert_array_equal(result, ndi.correlate(np.asarray(image, float), kernel, mode="nearest"))
    # A list of Python ints is int64: float64 compute.
    assert convflow.correlate([1, 2, 3], kernel).dtype == np.float64


def test_dask_in_gives_a_lazy_dask_array_with_the_same_chunks(exploding):
    image = exploding((7, 9))
    for op in OPS:
        result = getattr(convflow, op)(image, np.ones((5, 4)), mode="reflect")
        assert isinstance(result, da.Array)
        assert result.chunks == image.chunks
        assert result.dtype == np.float64
        with pytest.raises(ComputedTooEarly):  # nothing ran until now
            result.compute(scheduler="synchronous")


def test_read_only_input_is_accepted_and_left_unchanged(rng):
    image = rng.standard_normal((6, 5))
    image.flags.writeable = False
    kernel = rng.standard_normal((3, 3))
    for op in OPS:
        assert_filter_matches_scipy(op, image, kernel, mode="constant", cval=1.0)
        assert_filter_matches_scipy(op, image, kernel, chunks=2, mode="constant", cval=1.0)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (4, 0)])
def test_empty_image_gives_an_empty_result_of_the_compute_dtype(shape):
    image = np.zeros(shape, dtype=np.uint8)
    result = convflow.convolve(image, np.ones(3))
    assert type(result) is np.ndarray
    assert result.shape == shape
    assert result.dtype == np.float32
    lazy = convflow.convolve(da.from_array(image, chunks=2), np.ones(3), dtype=np.int16)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == da.from_array(image, chunks=2).chunks
    assert lazy.compute(scheduler="synchronous").dtype == np.int16


def test_kernel_larger_than_the_array_on_every_axis_matches_scipy(rng):
    image = rng.standard_normal((2, 3))
    kernel = rng.standard_normal((7, 8))
    for op in OPS:
        for mode in ("reflect", "mirror", "wrap", "nearest", "constant"):
            assert_filter_matches_scipy(op, image, kernel, chunks=1, mode=mode, cval=-1.0)


KERNEL_ERRORS = [
    (np.ones((3, 3, 3)), r"kernel has 3 axes but the image has only 2"),
    ([], r"kernel has shape \(0,\) and holds no values"),
    (np.ones((3, 0)), r"kernel has shape \(3, 0\) and holds no values"),
    (2.0, r"kernel is a scalar"),
    (np.array([[1.0, np.nan]]), r"kernel holds NaN or infinite values"),
    (np.array([1.0, -np.inf, 1.0]), r"kernel holds NaN or infinite values"),
    (np.array([1.0, 1j]), r"kernel has complex dtype complex128"),
    (np.array([1.0, 0.0], dtype=np.complex64), r"kernel has complex dtype complex64"),
    ([[1.0, 2.0], [3.0]], r"kernel \[\[1\.0, 2\.0\], \[3\.0\]\] is not a numeric array"),
    (["a", "b"], r"kernel \['a', 'b'\] is not a numeric array"),
    # Accepted on main: every result was inf or nan (#15, item 6).
    (np.array([1e308, -1e308]), r"kernel weights sum to inf in absolute value, more than float64"),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("kernel", "match"), KERNEL_ERRORS)
def test_bad_kernel_is_an_error_before_any_compute(kernel, match, op, exploding):
    with pytest.raises(KernelError, match=match) as caught:
        getattr(convflow, op)(exploding((6, 8)), kernel)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("op", OPS)
def test_weights_beyond_the_compute_dtypes_range_are_an_error(op, exploding):
    # 9 weights of 1e38 are finite in float64 but overflow float32, a uint8 image's compute dtype.
    with pytest.raises(
        KernelError, match=r"kernel weights sum to 9e\+38 in absolute value, more than float32"
    ):
        getattr(convflow, op)(exploding((6, 8), dtype=np.uint8), np.full((3, 3), 1e38))


AXES_ERRORS = [
    ((0, 3), r"axes=\(0, 3\): axis 3 is out of range for an image with 3 axes \(valid: -3 to 2\)"),
    ((-4, 1), r"axes=\(-4, 1\): axis -4 is out of range for an image with 3 axes"),
    ((1, 1), r"axes=\(1, 1\) repeats an axis"),
    ((1, -2), r"axes=\(1, -2\) repeats an axis"),
    ((2, 0), r"axes=\(2, 0\) must be increasing; use axes=\(0, 2\)"),
    ((-1, 0), r"axes=\(-1, 0\) must be increasing; use axes=\(0, 2\)"),
    ((0,), r"axes=\(0,\) names 1 axes but the kernel has 2"),
    ((0, 1, 2), r"axes=\(0, 1, 2\) names 3 axes but the kernel has 2"),
    ((0.0, 1), r"axes=\(0\.0, 1\) must be integers"),
    ((True, 2), r"axes=\(True, 2\) must be integers"),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("axes", "match"), AXES_ERRORS)
def test_bad_axes_are_an_error_before_any_compute(axes, match, op, exploding):
    with pytest.raises(ArgumentError, match=match) as caught:
        getattr(convflow, op)(exploding((4, 6, 8)), np.ones((3, 3)), axes=axes)
    assert isinstance(caught.value, ValueError)


ORIGIN_ERRORS = [
    ((3, 3), 2, r"origin=2: 2 is out of range for a kernel axis of size 3; it must lie in \[-1, 1\]"),
    ((3, 3), -2, r"origin=-2: -2 is out of range for a kernel axis of size 3; it must lie in \[-1, 1\]"),
    (
        (3, 4),
        (0, 2),
        r"origin=\(0, 2\): 2 is out of range for a kernel axis of size 4; it must lie in \[-2, 1\]",
    ),
    ((3, 4), (0, -3), r"origin=\(0, -3\): -3 is out of range for a kernel axis of size 4"),
    (
        (1, 4),
        (1, 0),
        r"origin=\(1, 0\): 1 is out of range for a kernel axis of size 1; it must lie in \[0, 0\]",
    ),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(("kernel_shape", "origin", "match"), ORIGIN_ERRORS)
def test_origin_outside_scipys_range_is_an_error_before_any_compute(
    kernel_shape, origin, match, op, exploding
):
    with pytest.raises(ValueError, match="origin"):
        getattr(ndi, op)(np.zeros((6, 8)), np.ones(kernel_shape), origin=origin)  # scipy refuses it too
    with pytest.raises(ArgumentError, match=match):
        getattr(convflow, op)(exploding((6, 8)), np.ones(kernel_shape), origin=origin)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kernel_shape", [(1,), (2,), (3,), (4,), (5,), (6,)])
def test_scipys_extreme_origins_are_accepted_and_match_scipy(kernel_shape, op, rng):
    image = rng.standard_normal(9)
    kernel = rng.standard_normal(kernel_shape)
    (n,) = kernel_shape
    for origin in (-(n // 2), (n - 1) // 2):
        assert_filter_matches_scipy(op, image, kernel, chunks=2, origin=origin, mode="reflect")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"origin": (0, 0, 0)}, r"origin=\(0, 0, 0\) has 3 entries; give one number or 2"),
        ({"origin": 0.5}, r"origin=0\.5 must hold integers"),
        ({"origin": (1, 1.0)}, r"origin=\(1, 1\.0\) must hold integers"),
        ({"cval": "a"}, r"cval='a' must be a real number"),
        ({"cval": 1j}, r"cval=1j must be a real number"),
        ({"cval": None}, r"cval=None must be a real number"),
    ],
)
def test_bad_origin_or_cval_is_an_error_before_any_compute(options, match, exploding):
    with pytest.raises(ArgumentError, match=match):
        convflow.convolve(exploding(), np.ones((3, 3)), **options)


def test_scalar_image_is_an_error():
    with pytest.raises(ImageError, match=r"image is a scalar"):
        convflow.convolve(np.float64(3.0), [1.0])


@st.composite
def filter_cases(draw: st.DrawFn) -> dict:
    """One convolve/correlate call: shape, chunks, kernel, origin, mode, method, op, dtype."""
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 8)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    kernel_ndim = draw(st.integers(1, ndim))
    axes = tuple(sorted(draw(st.permutations(range(ndim)))[:kernel_ndim]))
    kernel_shape = tuple(draw(st.integers(1, 6)) for _ in axes)  # may outgrow the array
    origin = tuple(draw(st.integers(-(n // 2), (n - 1) // 2)) for n in kernel_shape)
    method = draw(st.sampled_from(METHODS))
    kernel_rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if method == "separable":
        kernel = np.array(1.0)
        for n in kernel_shape:
            kernel = np.multiply.outer(kernel, kernel_rng.standard_normal(n))
    else:
        kernel = kernel_rng.standard_normal(kernel_shape)
    dtype = draw(st.sampled_from([np.float64, np.float32, np.uint8, np.int16]))
    image = (kernel_rng.standard_normal(shape) * 50).astype(dtype)
    default_axes = axes == tuple(range(ndim - kernel_ndim, ndim))
    spelled = draw(st.sampled_from(["positive", "negative", "default"]))
    if spelled == "negative":
        axes = tuple(a - ndim for a in axes)
    elif spelled == "default" and default_axes:
        axes = None
    return {
        "op": draw(st.sampled_from(OPS)),
        "image": image,
        "kernel": kernel,
        "chunks": draw(st.sampled_from([chunks, None])),
        "mode": draw(st.sampled_from(MODES + tuple(ALIASES))),
        "cval": draw(st.sampled_from([0.0, -2.5, 7.0])),
        "origin": origin,
        "axes": axes,
        "method": method,
    }


# Each example builds and computes a small dask graph (~20-40 ms here), so 120
# examples cost a few seconds; the parametrised tests above pin the known edges
# and this roams between them.  No database: the suite leaves no files behind.
@settings(max_examples=120, deadline=None, database=None)
@given(case=filter_cases())
def test_any_call_matches_scipy(case):
    op, image, kernel = case.pop("op"), case.pop("image"), case.pop("kernel")
    assert_filter_matches_scipy(op, image, kernel, **case)


# Issue #13 item 5: scipy.ndimage's output= keyword, as scipy reads it.
OUTPUT_DTYPES = [np.float64, np.dtype(np.float32), "float64", "f4", np.uint8, "int16"]


@pytest.mark.parametrize("output", OUTPUT_DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("chunks", [None, (3, 4), 1], ids=["numpy", "ragged", "size-1"])
def test_output_dtype_gives_the_same_result_as_dtype(output, op, chunks, rng):
    image = (rng.random((7, 9)) * 200).astype(np.uint8)
    kernel = rng.standard_normal((3, 2))
    source = image if chunks is None else da.from_array(image, chunks=chunks)
    given = getattr(convflow, op)(source, kernel, mode="nearest", output=output)
    expected = assert_filter_matches_scipy(op, image, kernel, chunks=chunks, mode="nearest", dtype=output)
    assert given.dtype == np.dtype(output)
    np.testing.assert_array_equal(np.asarray(given), expected)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("op", OPS)
def test_output_array_is_filled_and_returned_as_scipy_returns_it(op, dtype, rng):
    image = rng.random((8, 6)) * 100
    kernel = rng.standard_normal((2, 3))
    ours = np.full(image.shape, 7, dtype=dtype)
    theirs = np.full(image.shape, 7, dtype=dtype)
    returned = getattr(convflow, op)(image, kernel, output=ours, mode="wrap")
    scipy_returned = getattr(ndi, op)(image, kernel, output=theirs, mode="wrap")
    assert returned is ours
    assert scipy_returned is theirs
    expected = assert_filter_matches_scipy(op, image, kernel, mode="wrap", dtype=dtype)
    np.testing.assert_array_equal(ours, expected)


def test_a_scipy_call_with_output_runs_unchanged(rng):
    image = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    kernel = rng.standard_normal((5, 2))
    theirs, ours = np.zeros((10, 10)), np.zeros((10, 10))
    ndi.convolve(image, kernel, output=theirs, mode="constant", cval=1.0, origin=(1, 0))
    convflow.convolve(image, kernel, output=ours, mode="constant", cval=1.0, origin=(1, 0))
    # A float64 output is computed in float64, so it is within float64 rounding of scipy's.
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9 * np.abs(kernel).sum() * 255)


def test_output_array_that_is_the_image_itself_gets_the_whole_result(rng):
    image = rng.standard_normal((9, 9))
    expected = ndi.convolve(image, np.ones((3, 3)))
    returned = convflow.convolve(image, np.ones((3, 3)), output=image)
    assert returned is image
    np.testing.assert_allclose(image, expected, atol=1e-12)


def test_output_array_of_a_strided_view_is_filled_in_place(rng):
    image = rng.standard_normal((6, 5))
    storage = np.zeros((6, 10))
    view = storage[:, ::2]
    convflow.correlate(image, [1.0, -1.0], output=view)
    np.testing.assert_allclose(storage[:, ::2], ndi.correlate(image, [[1.0, -1.0]]), atol=1e-12)
    assert not storage[:, 1::2].any()


@pytest.mark.parametrize(
    ("image", "options", "match"),
    [
        (
            np.ones((4, 5)),
            {"output": np.zeros((5, 4))},
            r"output= has shape \(5, 4\) but the image has shape \(4, 5\)",
        ),
        (
            da.ones((4, 5), chunks=2),
            {"output": np.zeros((4, 5))},
            r"output= is an array \(ndarray of shape \(4, 5\)\), but a dask image",
        ),
        (np.ones((4, 5)), {"output": da.zeros((4, 5))}, r"output= is an array \(Array of shape \(4, 5\)\)"),
        (
            np.ones(3),
            {"output": np.float32, "dtype": np.float64},
            "keep dtype=<class 'numpy.float64'> and drop output=",
        ),
        (
            np.ones(3),
            {"output": np.zeros(3), "dtype": "float32"},
            r"keep output= \(the array to fill\) and drop dtype=",
        ),
        (np.ones(3), {"output": "floaty"}, "output='floaty' is not a numpy dtype"),
        (
            np.ones(3),
            {"output": np.zeros(3, dtype=complex)},
            "output=complex128 cannot hold a filtered result",
        ),
        (np.ones(3), {"output": bool}, "output=bool cannot hold a filtered result"),
        (
            np.ones(3),
            {"output": [0.0, 0.0, 0.0]},
            r"output=\[0.0, 0.0, 0.0\] is neither a dtype .* nor a numpy array",
        ),
    ],
)
@pytest.mark.parametrize("op", OPS)
def test_output_mistakes_are_errors_that_name_the_fix(op, image, options, match):
    with pytest.raises(ArgumentError, match=match):
        getattr(convflow, op)(image, [1.0, 2.0], **options)


def test_read_only_output_array_is_refused_before_anything_is_computed(exploding):
    target = np.zeros((6, 8))
    target.flags.writeable = False
    with pytest.raises(ArgumentError, match=r"output= is a read-only array of shape \(6, 8\)"):
        convflow.convolve(np.ones((6, 8)), [1.0], output=target)
    with pytest.raises(ArgumentError, match="both set the result's dtype"):
        convflow.convolve(exploding(), [1.0], output="float32", dtype="float32")
