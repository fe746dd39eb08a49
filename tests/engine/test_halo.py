"""Halos (_halo.py): how far a kernel reads, how chunks merge, and how blocks are extended."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from _oracle import NUMPY_PAD
from hypothesis import given, settings
from hypothesis import strategies as st

from convflow.engine._halo import (
    axis_runs,
    correlation_halo,
    full_halo,
    minimum_chunks,
    pad,
    padded_blocks,
    working_chunks,
)
from convflow.engine._modes import MODES, is_constant


def np_pad(array: np.ndarray, halo, mode: str, cval: float) -> np.ndarray:
    """The expected extension, from numpy's own padding."""
    if is_constant(mode):
        return np.pad(array, halo, mode="constant", constant_values=cval)
    return np.pad(array, halo, mode=NUMPY_PAD[mode])


def test_numpy_pad_table_covers_every_mode():
    assert set(NUMPY_PAD) == set(MODES)


@pytest.mark.parametrize(
    ("kernel_shape", "origin", "halo"),
    [
        ((1,), (0,), ((0, 0),)),
        ((3,), (0,), ((1, 1),)),
        ((4,), (0,), ((2, 1),)),
        ((5,), (-2,), ((0, 4),)),
        ((5,), (2,), ((4, 0),)),
        ((4,), (-2,), ((0, 3),)),
        ((4,), (1,), ((3, 0),)),
        ((3, 4, 1), (1, -1, 0), ((2, 0), (1, 2), (0, 0))),
    ],
)
def test_correlation_halo_hand_table(kernel_shape, origin, halo):
    assert correlation_halo(kernel_shape, origin) == halo


@pytest.mark.parametrize("size", range(1, 8))
def test_correlation_halo_is_how_far_scipy_reads_past_each_edge(size):
    # With cval NaN, exactly the outputs that read past an edge are NaN.
    image = np.zeros(20)
    for origin in range(-(size // 2), (size - 1) // 2 + 1):
        result = ndi.correlate(image, np.ones(size), mode="constant", cval=np.nan, origin=origin)
        reads_outside = np.isnan(result)
        before = int(np.argmin(reads_outside)) if reads_outside[0] else 0
        after = int(np.argmin(reads_outside[::-1])) if reads_outside[-1] else 0
        assert correlation_halo((size,), (origin,)) == ((before, after),)


def test_full_halo_gives_batch_axes_no_halo():
    assert full_halo(4, (1, 3), ((1, 2), (3, 0))) == ((0, 0), (1, 2), (0, 0), (3, 0))
    assert full_halo(2, (0, 1), ((1, 1), (0, 2))) == ((1, 1), (0, 2))


@pytest.mark.parametrize(
    ("chunks", "size", "merged"),
    [
        ((4, 4, 4), 3, (4, 4, 4)),
        ((4, 4, 4, 1), 3, (4, 4, 5)),
        ((1, 4, 4), 3, (5, 4)),
        ((2, 2, 2), 3, (6,)),
        ((2, 2), 9, (4,)),
        ((1,) * 7, 2, (2, 2, 3)),
        ((5,), 9, (5,)),
        ((3, 1), 0, (3, 1)),
    ],
)
def test_minimum_chunks_merges_neighbours_until_each_holds_the_halo(chunks, size, merged):
    assert minimum_chunks(chunks, size) == merged


chunk_lists = st.lists(st.integers(1, 6), min_size=1, max_size=10).map(tuple)


# Pure integer bookkeeping, microseconds an example: 300 examples cost well under a second.
@settings(max_examples=300, deadline=None, database=None)
@given(chunks=chunk_lists, before=st.integers(0, 12), after=st.integers(0, 12), fused=st.booleans())
def test_working_chunks_merge_whole_chunks_and_hold_the_halo(chunks, before, after, fused):
    merged = working_chunks(chunks, before, after, edges_read_inside=fused)
    assert sum(merged) == sum(chunks)
    # Only whole chunks merge: every new boundary was an old one.
    old = set(np.cumsum(chunks).tolist())
    assert set(np.cumsum(merged).tolist()) <= old
    if len(merged) > 1:
        assert min(merged) >= max(before, after)
        if fused:
            assert merged[0] >= before + 1
            assert merged[-1] >= after + 1
    if not fused and min(chunks) >= max(before, after):
        assert merged == chunks  # nothing to merge: the input chunks stay


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("halo", [(0, 0), (3, 0), (0, 7), (6, 6), (1, 2)])
@pytest.mark.parametrize("mode", MODES)
def test_pad_matches_np_pad_even_past_a_whole_period(mode, halo, size):
    image = np.arange(1.0, size + 1)
    expected = np_pad(image, [halo], mode, cval=-7.0)
    padded = pad(image, (halo,), mode, -7.0, np.dtype(np.float64))
    np.testing.assert_array_equal(padded, expected)


@pytest.mark.parametrize("mode", MODES)
def test_pad_casts_once_and_leaves_batch_axes_alone(mode, rng):
    image = rng.integers(0, 255, (3, 4, 5), dtype=np.uint8)
    halo = ((0, 0), (5, 2), (1, 9))
    padded = pad(image, halo, mode, 2.0, np.dtype(np.float32))
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded, np_pad(image.astype(np.float32), halo, mode, cval=2.0))


def test_runs_are_slices_of_one_chunk_each():
    # Chunks (3, 3) of a 6-long axis; reflect reads 1, 0 for positions -2, -1.
    first, second = axis_runs((3, 3), 2, 1, "reflect")
    assert [(r.target, r.chunk, r.source) for r in first] == [
        (slice(0, 2), 0, slice(1, None, -1)),
        (slice(2, 5), 0, slice(0, 3, 1)),
        (slice(5, 6), 1, slice(0, 1, 1)),
    ]
    assert [(r.target, r.chunk) for r in second] == [(slice(0, 2), 0), (slice(2, 5), 1), (slice(5, 6), 1)]
    # nearest repeats one value: a run of step 0, one source value broadcast.
    (edge, body) = axis_runs((4,), 3, 0, "nearest")[0]
    assert (edge.target, edge.source) == (slice(0, 4), slice(0, 1))
    assert body.target == slice(4, 7)
    constant = axis_runs((4,), 2, 2, "constant")[0]
    assert [r.chunk for r in constant] == [None, 0, None]


chunkings = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


# Each example builds and computes a few tiny dask arrays: 80 examples take about a second.
@settings(max_examples=80, deadline=None, database=None)
@given(
    rows=chunkings,
    cols=chunkings,
    halo=st.tuples(
        st.tuples(st.integers(0, 7), st.integers(0, 7)), st.tuples(st.integers(0, 4), st.integers(0, 4))
    ),
    mode=st.sampled_from(MODES),
)
def test_padded_blocks_equal_np_pad_for_any_chunking(rows, cols, halo, mode):
    image = np.arange(sum(rows) * sum(cols), dtype=np.int16).reshape(sum(rows), sum(cols))
    work = tuple(
        working_chunks(c, b, a, edges_read_inside=False) for c, (b, a) in zip((rows, cols), halo, strict=True)
    )
    blocks = padded_blocks(da.from_array(image, chunks=work), halo, mode, 0.5, np.dtype(np.float32))
    extended = np_pad(image.astype(np.float32), halo, mode, 0.5)
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in work]
    for index in np.ndindex(*blocks.numblocks):
        expected = extended[
            tuple(
                slice(int(s[i]), int(s[i + 1]) + b + a)
                for s, i, (b, a) in zip(starts, index, halo, strict=True)
            )
        ]
        np.testing.assert_array_equal(blocks.blocks[index].compute(scheduler="synchronous"), expected)


def test_each_padded_block_is_one_task_reading_only_its_neighbours():
    source = da.zeros((12, 12, 12), chunks=4, dtype=np.float32)
    blocks = padded_blocks(source, ((1, 1), (1, 1), (1, 1)), "reflect", 0.0, np.dtype(np.float32))
    layer = blocks.dask.layers[blocks.name]
    assert len(layer) == 27  # one task per block, no slicing or concatenation tasks
    deps = {len(blocks.dask.layers[blocks.name][(blocks.name, *i)][1]) for i in np.ndindex(3, 3, 3)}
    assert deps == {8, 12, 18, 27}  # corner, edge, face and inner blocks


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("chunks", "halo"), [((3, 2), ((2, 1), (0, 3))), ((1, 1), ((3, 3), (1, 0)))])
def test_padded_block_i_is_chunk_i_with_its_halo(mode, chunks, halo, rng):
    image = rng.standard_normal((7, 6))
    work = tuple(
        working_chunks(c, b, a, edges_read_inside=False)
        for c, (b, a) in zip(da.from_array(image, chunks=chunks).chunks, halo, strict=True)
    )
    source = da.from_array(image, chunks=work)
    blocks = padded_blocks(source, halo, mode, 0.5, np.dtype(np.float64))
    extended = np_pad(image, halo, mode, 0.5)
    starts = [np.concatenate([[0], np.cumsum(c)]) for c in work]
    for index in np.ndindex(*blocks.numblocks):
        block = blocks.blocks[index].compute(scheduler="synchronous")
        # Output block i starts at s in the volume, so its padded block starts
        # at s in the extended array (which is shifted by `before`).
        expected = extended[
            tuple(
                slice(int(s[i]), int(s[i + 1]) + b + a)
                for s, i, (b, a) in zip(starts, index, halo, strict=True)
            )
        ]
        np.testing.assert_array_equal(block, expected, err_msg=f"block {index}")
