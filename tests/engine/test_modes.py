"""Boundary modes (_modes.py): the table against scipy, hand tables, and every mode against scipy."""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from _oracle import NUMPY_PAD, OPS, SPEC_ALIASES, assert_filter_matches_scipy, scipy_reference

import convflow
from convflow.engine._modes import ALIASES, MODES, parse_mode, source_index
from convflow.errors import ModeError

ALL_MODES = MODES + tuple(ALIASES)


def scipy_filter_modes() -> set[str]:
    """Every mode name scipy.ndimage.correlate documents, synonyms included."""
    doc = ndi.correlate.__doc__
    section = doc[doc.index("mode :") : doc.index("cval :")]
    return set(re.findall(r"^\s+'([a-z-]+)'", section, flags=re.MULTILINE))


def test_modes_table_is_scipys_full_set_of_filter_modes():
    documented = scipy_filter_modes()
    assert len(MODES) == len(set(MODES))
    assert set(MODES) == documented
    # grid-wrap is the one dask-image missed; make sure the parse saw it.
    assert {"grid-wrap", "grid-mirror", "grid-constant"} <= documented
    image, kernel = np.arange(5.0), np.ones(3)
    for mode in MODES:
        ndi.correlate(image, kernel, mode=mode)  # scipy accepts every entry
    with pytest.raises(RuntimeError, match="boundary mode not supported"):
        ndi.correlate(image, kernel, mode="symm")  # the aliases are convflow's, not scipy's


def test_aliases_are_the_spec_table():
    assert dict(ALIASES) == SPEC_ALIASES
    assert not set(ALIASES) & set(MODES)


# scipy.signal's boundary name for each alias: it calls circular boundaries 'wrap'.
SIGNAL_BOUNDARY = {"symm": "symm", "fill": "fill", "circular": "wrap"}


@pytest.mark.parametrize("alias", ALIASES)
def test_alias_equals_its_target_in_scipy_terms(alias, rng):
    image = rng.standard_normal((6, 7))
    kernel = rng.standard_normal((3, 3))
    target = ALIASES[alias]
    signal = scipy.signal.correlate2d(
        image, kernel, mode="same", boundary=SIGNAL_BOUNDARY[alias], fillvalue=2.5
    )
    np.testing.assert_allclose(ndi.correlate(image, kernel, mode=target, cval=2.5), signal, rtol=1e-12)
    by_alias = convflow.correlate(image, kernel, mode=alias, cval=2.5)
    np.testing.assert_array_equal(by_alias, convflow.correlate(image, kernel, mode=target, cval=2.5))
    np.testing.assert_allclose(by_alias, signal, rtol=1e-12)


def test_parse_mode_returns_the_scipy_name():
    assert [parse_mode(m) for m in MODES] == list(MODES)
    assert {a: parse_mode(a) for a in ALIASES} == SPEC_ALIASES


# The image [1, 2, 3, 4] extended by 4 values on each side, as scipy's
# docstring draws each mode (cval = 9): left extension, right extension.
EXTENDED = {
    "reflect": ([4, 3, 2, 1], [4, 3, 2, 1]),  # d c b a | a b c d | d c b a
    "mirror": ([3, 4, 3, 2], [3, 2, 1, 2]),  # d c b | a b c d | c b a, period 6
    "nearest": ([1, 1, 1, 1], [4, 4, 4, 4]),
    "wrap": ([1, 2, 3, 4], [1, 2, 3, 4]),
    "constant": ([9, 9, 9, 9], [9, 9, 9, 9]),
    "grid-wrap": ([1, 2, 3, 4], [1, 2, 3, 4]),
    "grid-mirror": ([4, 3, 2, 1], [4, 3, 2, 1]),
    "grid-constant": ([9, 9, 9, 9], [9, 9, 9, 9]),
    "symm": ([4, 3, 2, 1], [4, 3, 2, 1]),
    "fill": ([9, 9, 9, 9], [9, 9, 9, 9]),
    "circular": ([1, 2, 3, 4], [1, 2, 3, 4]),
}


def test_hand_table_covers_every_mode_and_alias():
    assert set(EXTENDED) == set(ALL_MODES)


@pytest.mark.parametrize("chunks", [None, 1], ids=["numpy", "chunks-of-1"])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_mode_extends_the_image_as_the_hand_table_says(mode, chunks):
    image = np.array([1.0, 2.0, 3.0, 4.0])
    # A one-hot kernel of 9 at its first (last) tap reads 4 values before (after) each point.
    read_left, read_right = np.eye(9)[0], np.eye(9)[8]
    source = image if chunks is None else da.from_array(image, chunks=chunks)
    left, right = EXTENDED[mode]
    scipy_mode = SPEC_ALIASES.get(mode, mode)
    for kernel, expected in ((read_left, left), (read_right, right)):
        np.testing.assert_array_equal(ndi.correlate(image, kernel, mode=scipy_mode, cval=9.0), expected)
        result = convflow.correlate(source, kernel, mode=mode, cval=9.0)
        if chunks is not None:
            result = result.compute(scheduler="synchronous")
        np.testing.assert_array_equal(result, expected)


CHUNKINGS = {
    "one-chunk": -1,
    "ragged": (3, 4),  # ((3, 3, 1), (4, 4, 2))
    "smaller-than-halo": (2, 3),
    "size-1": 1,
}
KERNEL_SHAPES = {
    "odd": (3, 3),
    "even": (2, 4),
    "width-1": (1, 5),
    "larger-than-array": (9, 13),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES.values(), ids=KERNEL_SHAPES.keys())
@pytest.mark.parametrize("chunks", CHUNKINGS.values(), ids=CHUNKINGS.keys())
@pytest.mark.parametrize("mode", ALL_MODES)
def test_mode_matches_scipy_for_every_chunking_and_kernel_shape(mode, chunks, kernel_shape, op, rng):
    image = rng.standard_normal((7, 10))
    kernel = rng.standard_normal(kernel_shape)
    assert_filter_matches_scipy(op, image, kernel, chunks=chunks, mode=mode, cval=1.5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("where", ["lowest", "highest", "lowest-highest", "highest-lowest"])
@pytest.mark.parametrize("mode", ALL_MODES)
def test_mode_matches_scipy_at_scipys_extreme_origins_when_halo_exceeds_chunk(mode, where, op, rng):
    kernel_shape = (4, 5)
    lowest = tuple(-(n // 2) for n in kernel_shape)  # (-2, -2)
    highest = tuple((n - 1) // 2 for n in kernel_shape)  # (1, 2)
    origin = {
        "lowest": lowest,
        "highest": highest,
        "lowest-highest": (lowest[0], highest[1]),
        "highest-lowest": (highest[0], lowest[1]),
    }[where]
    image = rng.standard_normal((7, 9))
    kernel = rng.standard_normal(kernel_shape)
    # An extreme origin puts the whole halo (3 or 4) on one side of chunks of 2.
    assert_filter_matches_scipy(op, image, kernel, chunks=2, mode=mode, cval=-0.5, origin=origin)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_mode_matches_scipy_when_kernel_is_many_times_the_array(mode, rng):
    image = rng.standard_normal((1, 2, 3))
    kernel = rng.standard_normal((3, 7, 11))
    assert_filter_matches_scipy("correlate", image, kernel, chunks=1, mode=mode, cval=0.25, origin=(1, -3, 5))


@pytest.mark.parametrize("origin", [-8, 0, 8])
def test_reflect_far_past_the_lower_edge_matches_correlate1d(origin, rng):
    # scipy's N-D correlate misreads reflect positions 2 * m * size before the
    # start (m >= 2); correlate1d extends lines correctly, so it is the oracle
    # here, and tests/_oracle.py's workaround must agree with it.
    image = rng.standard_normal((3, 2))
    kernel = rng.standard_normal(17)
    expected = ndi.correlate1d(image, kernel, axis=1, mode="reflect", origin=origin)
    result = convflow.correlate(da.from_array(image, chunks=1), kernel, origin=origin)
    np.testing.assert_allclose(result.compute(scheduler="synchronous"), expected, rtol=0, atol=1e-12)
    assert_filter_matches_scipy("correlate", image, kernel, chunks=1, origin=origin)


def test_oracle_reference_is_scipy_itself_away_from_its_reflect_bug(rng):
    # The workaround in _oracle.scipy_reference only engages past 4 sizes.
    image = rng.standard_normal((5, 6))
    kernel = rng.standard_normal((3, 4))
    np.testing.assert_array_equal(
        scipy_reference("convolve", image, kernel, mode="symm", origin=(1, -2)),
        ndi.convolve(image, kernel, mode="reflect", origin=(1, -2)),
    )


@pytest.mark.parametrize("cval", [0.0, -3.25, 1e6, np.nan])
@pytest.mark.parametrize("mode", ["constant", "grid-constant", "fill"])
def test_constant_modes_fill_with_cval_like_scipy(mode, cval, rng):
    image = rng.standard_normal((5, 6))
    kernel = rng.standard_normal((3, 4))
    for op in OPS:
        assert_filter_matches_scipy(op, image, kernel, chunks=(2, 4), mode=mode, cval=cval)


@pytest.mark.parametrize(
    "mode", [m for m in ALL_MODES if SPEC_ALIASES.get(m, m) not in ("constant", "grid-constant")]
)
def test_cval_is_ignored_by_modes_that_read_the_image(mode, rng):
    image = rng.standard_normal((5, 6))
    kernel = rng.standard_normal((3, 3))
    np.testing.assert_array_equal(
        convflow.correlate(image, kernel, mode=mode, cval=1e6),
        convflow.correlate(image, kernel, mode=mode, cval=0.0),
    )


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("mode", [m for m in MODES if NUMPY_PAD[m] != "constant"])
def test_source_index_reads_what_np_pad_reads_any_distance_past_the_edge(mode, size):
    distance = 13
    positions = np.arange(-distance, size + distance)
    expected = np.pad(np.arange(size), distance, mode=NUMPY_PAD[mode])
    np.testing.assert_array_equal(source_index(positions, size, mode), expected)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("refelct", r"mode='refelct' is not a boundary mode\. Did you mean 'reflect'\?"),
        ("Reflect", r"mode='Reflect' is not a boundary mode"),
        ("gridwrap", r"mode='gridwrap' is not a boundary mode\. Did you mean 'grid-wrap'\?"),
        (None, r"mode=None is not a boundary mode"),
        (3, r"mode=3 is not a boundary mode"),
    ],
)
def test_unknown_mode_is_an_error_that_lists_the_valid_ones(mode, match, exploding):
    with pytest.raises(ModeError, match=match) as caught:
        convflow.convolve(exploding(), np.ones((3, 3)), mode=mode)
    message = str(caught.value)
    for valid in ALL_MODES:
        assert valid in message
    assert isinstance(caught.value, ValueError)
