"""Fused kernel stacks against scipy.ndimage applied step by step (issue #3)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

import convflow
from convflow import Step, apply_stack, combine
from convflow.engine import MODES
from convflow.engine._fused import fusable_groups
from convflow.errors import ArgumentError, ModeError

RNG = np.random.default_rng(20261125)


def sequential_scipy(image: np.ndarray, steps: list[Step]) -> np.ndarray:
    """The oracle: each step with scipy.ndimage on the whole float64 array."""
    result = image.astype(np.float64)
    for step in steps:
        kernel = np.asarray(step.kernel, dtype=np.float64)
        axes = tuple(range(image.ndim - kernel.ndim, image.ndim)) if step.axes is None else step.axes
        function = ndi.convolve if step.op == "convolve" else ndi.correlate
        result = function(result, kernel, mode=step.mode, cval=step.cval, origin=step.origin, axes=axes)
    return result


def assert_stack_matches(image: np.ndarray, chunks, steps: list[Step], rtol: float = 1e-9) -> None:
    """Chunked stack equals the sequential oracle within the spec's tolerance, compounded per step."""
    lazy = apply_stack(da.from_array(image, chunks=chunks), steps)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == da.from_array(image, chunks=chunks).chunks
    result = lazy.compute(scheduler="synchronous")
    expected = sequential_scipy(image, steps)
    scale = max([np.abs(image).max(initial=0.0)] + [abs(s.cval) for s in steps])
    for step in steps:
        scale *= max(1.0, np.abs(np.asarray(step.kernel)).sum())
    error = np.abs(result - expected).max(initial=0.0)
    assert error <= rtol * max(scale, 1.0), f"max error {error:g} for steps {steps}"


def asymmetric(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.standard_normal(shape)


@pytest.mark.parametrize("first", MODES)
@pytest.mark.parametrize("second", MODES)
def test_two_step_stack_matches_scipy_for_every_pair_of_modes(first, second):
    image = RNG.standard_normal((11, 9))
    steps = [
        Step(asymmetric((3, 2)), mode=first, cval=1.5, origin=(0, -1)),
        Step(asymmetric((2, 3)), op="correlate", mode=second, cval=-2.0),
    ]
    # Chunks of 2 along the first axis are smaller than the summed halo of 3.
    assert_stack_matches(image, (2, 4), steps)


def test_constant_then_reflect_stack_is_exact_where_plain_fusion_is_not():
    image = RNG.standard_normal(16)
    kernel_a, kernel_b = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, 3.0])
    steps = [Step(kernel_a, mode="constant", cval=4.0), Step(kernel_b, op="correlate", mode="reflect")]
    assert_stack_matches(image, 5, steps)
    # One pass of the composed kernel with the first mode misses the second
    # step's boundary rule: the edges differ, so the re-imposition is needed.
    composed = np.convolve(kernel_a, kernel_b[::-1])
    plain = ndi.convolve(image, composed, mode="constant", cval=4.0)
    expected = sequential_scipy(image, steps)
    assert not np.allclose(plain[-2:], expected[-2:])
    np.testing.assert_allclose(plain[2:-2], expected[2:-2])


@pytest.mark.parametrize("chunks", [(17, 13), (4, 3), (1, 2), (16, 1)])
def test_three_step_smooth_sharpen_sobel_stack_matches_scipy(chunks):
    image = RNG.random((17, 13)) * 100
    gauss = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    steps = [
        Step(np.outer(gauss, gauss) / gauss.sum() ** 2),
        Step([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]], mode="nearest"),
        Step(np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]), op="correlate", mode="mirror"),
    ]
    assert_stack_matches(image, chunks, steps)


def test_stack_over_batch_axes_leaves_them_unhaloed():
    image = RNG.standard_normal((3, 10, 12))
    steps = [
        Step(asymmetric((3, 3)), mode="wrap"),
        Step(asymmetric((4,)), axes=(1,), mode="constant", cval=1.0),
    ]
    assert_stack_matches(image, (1, 4, 5), steps)


def test_halo_larger_than_the_volume_matches_scipy():
    image = RNG.standard_normal(4)
    steps = [
        Step(asymmetric(7), mode="mirror"),
        Step(asymmetric(6), mode="reflect"),
        Step(asymmetric(5), mode="nearest"),
    ]
    assert_stack_matches(image, 1, steps)


def test_wrap_after_reflect_runs_as_a_second_pass_and_stays_exact():
    steps = [
        Step([1.0, 2.0, 3.0], mode="reflect"),
        Step([1.0, -1.0], mode="wrap"),
        Step([2.0, 1.0], mode="wrap"),
    ]
    groups = fusable_groups(
        [
            convflow.engine._filter.make_filter(
                np.float64,
                1,
                s.kernel,
                flip=True,
                mode=s.mode,
                cval=0.0,
                origin=0,
                axes=None,
                method="auto",
                dtype=None,
            )
            for s in steps
        ]
    )
    assert [len(g) for g in groups] == [1, 2]
    assert_stack_matches(RNG.standard_normal(20), 6, steps)


def test_fused_stack_graph_has_fewer_tasks_than_the_chain_of_single_filters():
    image = da.from_array(RNG.random((64, 64, 64)), chunks=16)
    kernels = [np.ones((3, 3, 3)) / 27, asymmetric((3, 3, 3)), asymmetric((3, 3, 3))]
    fused = apply_stack(image, [Step(k) for k in kernels])
    chained = image
    for kernel in kernels:
        chained = convflow.convolve(chained, kernel)
    assert len(dict(fused.__dask_graph__())) < len(dict(chained.__dask_graph__()))
    np.testing.assert_allclose(*dask.compute(fused, chained, scheduler="synchronous"), atol=1e-9)


def test_stack_result_dtype_is_rounded_and_saturated():
    image = np.array([0, 200, 255, 255, 10], dtype=np.uint8)
    steps = [Step([[-1.0, 3.0, -1.0]][0]), Step([1.0], mode="nearest")]
    result = apply_stack(image, steps, dtype=np.uint8)
    expected = np.clip(np.rint(sequential_scipy(image, steps)), 0, 255).astype(np.uint8)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, expected)


def test_stack_of_uint8_computes_in_float32():
    image = RNG.integers(0, 255, (9, 9), dtype=np.uint8)
    result = apply_stack(image, [Step(np.ones((3, 3)) / 9), Step([1.0, -1.0])])
    assert result.dtype == np.float32
    np.testing.assert_allclose(
        result, sequential_scipy(image, [Step(np.ones((3, 3)) / 9), Step([1.0, -1.0])]), atol=1e-3
    )


def test_stack_does_not_modify_its_input():
    image = RNG.standard_normal((8, 8))
    before = image.copy()
    apply_stack(image, [Step(asymmetric((3, 3)), mode="constant")])
    np.testing.assert_array_equal(image, before)


# Stacks of 1-4 steps with every mode, op, origin and method; 60 examples keep
# this under ten seconds while the explicit cases above pin down the edges.
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_stacks_match_sequential_scipy(data):
    ndim = data.draw(st.integers(1, 3), label="ndim")
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim), label="shape"))
    chunks = tuple(data.draw(st.integers(1, n), label="chunk") for n in shape)
    steps = []
    for _ in range(data.draw(st.integers(1, 4), label="steps")):
        kernel_ndim = data.draw(st.integers(1, ndim), label="kernel ndim")
        kshape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=kernel_ndim, max_size=kernel_ndim)))
        origin = tuple(data.draw(st.integers(-(n // 2), (n - 1) // 2)) for n in kshape)
        steps.append(
            Step(
                asymmetric(kshape),
                op=data.draw(st.sampled_from(["convolve", "correlate"])),
                mode=data.draw(st.sampled_from(MODES)),
                cval=data.draw(st.floats(-3, 3)),
                origin=origin,
                method=data.draw(st.sampled_from(["auto", "direct", "fft"])),
            )
        )
    assert_stack_matches(RNG.standard_normal(shape), chunks, steps)


def test_stack_errors_are_raised_before_compute():
    image = da.from_array(np.zeros((5, 5)), chunks=2)
    with pytest.raises(ArgumentError, match="non-empty sequence"):
        apply_stack(image, [])
    with pytest.raises(ArgumentError, match=r"steps\[0\] is"):
        apply_stack(image, [np.ones(3)])
    with pytest.raises(ArgumentError, match=r"steps\[1\].op='blur'"):
        apply_stack(image, [Step(np.ones(3)), Step(np.ones(3), op="blur")])
    with pytest.raises(ModeError, match="'reflekt'"):
        apply_stack(image, [Step(np.ones(3), mode="reflekt")])


@pytest.mark.parametrize(
    ("op", "inputs", "params", "expected"),
    [
        ("add", [[1.0, 2.0], [3.0, 4.0], [1.0, 1.0]], {}, [5.0, 7.0]),
        ("subtract", [[5.0, 2.0], [3.0, 4.0]], {}, [2.0, -2.0]),
        ("multiply", [[2.0, 3.0], [4.0, -1.0]], {}, [8.0, -3.0]),
        ("magnitude", [[3.0, 0.0], [4.0, -2.0]], {}, [5.0, 2.0]),
        ("abs", [[-3.0, 2.0]], {}, [3.0, 2.0]),
        ("scale", [[1.0, -2.0]], {"factor": 1.5}, [1.5, -3.0]),
        ("clip", [[-1.0, 0.5, 9.0]], {"min": 0.0, "max": 1.0}, [0.0, 0.5, 1.0]),
        ("clip", [[-1.0, 9.0]], {"max": 1.0}, [-1.0, 1.0]),
    ],
)
def test_combine_ops_match_numpy_lazily(op, inputs, params, expected):
    arrays = [da.from_array(np.array(v), chunks=1) for v in inputs]
    result = combine(op, *arrays, **params)
    assert isinstance(result, da.Array)
    np.testing.assert_allclose(result.compute(), expected)


def test_combine_keeps_float32():
    a = np.ones(3, dtype=np.float32)
    assert combine("magnitude", a, a).dtype == np.float32
    assert combine("add", a, np.ones(3, dtype=np.uint8)).dtype == np.float32


@pytest.mark.parametrize(
    ("op", "count", "params", "match"),
    [
        ("blend", 2, {}, "'blend' is unknown"),
        ("abs", 2, {}, "exactly one image, got 2"),
        ("subtract", 1, {}, "two or more images, got 1"),
        ("scale", 1, {}, "needs factor="),
        ("clip", 1, {}, "needs min= or max="),
        ("add", 2, {"factor": 2.0}, "takes no 'factor'"),
    ],
)
def test_combine_errors_name_the_problem(op, count, params, match):
    with pytest.raises(ArgumentError, match=match):
        combine(op, *[np.ones(3)] * count, **params)


def test_combine_refuses_images_of_different_shapes():
    with pytest.raises(ArgumentError, match=r"one shape, got shapes \[\(3,\), \(4,\)\]"):
        combine("add", np.ones(3), np.ones(4))


# Issue #13 item 4: a float64 result makes every step of the stack compute in float64.
@pytest.mark.parametrize("image_dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("chunks", [(17, 13), (4, 3), (1, 2)])
def test_float64_stack_of_a_small_image_computes_every_step_in_float64(image_dtype, chunks):
    image = (RNG.random((17, 13)) * 200).astype(image_dtype)
    steps = [
        Step(asymmetric((5, 2)), mode="constant", cval=2.0),
        Step(asymmetric((2, 3)), op="correlate", mode="nearest", method="fft"),
        Step(np.outer(asymmetric(4), asymmetric(3)), mode="mirror", method="separable"),
    ]
    lazy = apply_stack(da.from_array(image, chunks=chunks), steps, dtype=np.float64)
    assert lazy.dtype == np.float64
    result = lazy.compute(scheduler="synchronous")
    expected = sequential_scipy(image, steps)
    scale = np.abs(image).max() * np.prod([np.abs(s.kernel).sum() for s in steps])
    # float32 intermediates would be off by about 1e-6 of this scale.
    assert np.abs(result - expected).max() <= 1e-9 * scale


def test_integer_result_of_a_stack_keeps_float32_work_for_a_uint8_image():
    image = RNG.integers(0, 255, (9, 9), dtype=np.uint8)
    steps = [Step(np.ones((3, 3)) / 9), Step([1.0, -1.0])]
    filters = convflow.engine._stack._stack_filters(image, steps, np.uint16)
    assert [f.compute_dtype for f in filters] == [np.float32, np.float32]
    filters = convflow.engine._stack._stack_filters(image, steps, "float64")
    assert [f.compute_dtype for f in filters] == [np.float64, np.float64]


def test_combine_computes_in_a_float64_result_asked_for():
    a = RNG.integers(0, 256, 1000, dtype=np.uint8)
    b = RNG.integers(0, 256, 1000, dtype=np.uint8)
    expected = np.sqrt(a.astype(np.float64) ** 2 + b.astype(np.float64) ** 2)
    lazy = combine("magnitude", da.from_array(a, chunks=300), da.from_array(b, chunks=300), dtype="float64")
    assert lazy.dtype == np.float64
    np.testing.assert_array_equal(lazy.compute(), expected)
    assert not np.array_equal(combine("magnitude", a, b).astype(np.float64), expected)


def test_combine_integer_result_is_rounded_and_saturated():
    a = np.array([250, 3, 0], dtype=np.uint8)
    b = np.array([10, 4, 1], dtype=np.uint8)
    np.testing.assert_array_equal(combine("add", a, b, dtype=np.uint8), [255, 7, 1])
    lazy = combine("subtract", da.from_array(a, chunks=2), b, dtype=np.uint8)
    assert lazy.dtype == np.uint8
    np.testing.assert_array_equal(lazy.compute(), [240, 0, 0])
    np.testing.assert_array_equal(combine("scale", a, factor=0.5, dtype=np.int16), [125, 2, 0])


def test_combine_refuses_a_result_dtype_that_holds_no_number():
    with pytest.raises(ArgumentError, match="dtype=complex128 cannot hold"):
        combine("add", np.ones(3), np.ones(3), dtype=complex)
