"""Block arrays (engine/_blocks.py): each block's tasks made on demand, the same bytes as the dask arrays."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convflow.engine import (
    MODES,
    _halo,
    block_graph,
    combine,
    combine_blocks,
    describe_stack,
    filter_blocks,
    from_dask,
    make_filter,
    run_filters,
    shaped_blocks,
    take_blocks,
    to_dask,
)
from convflow.engine._blocks import DaskSource, Regrid, Source
from convflow.engine._shapes import _grown, margins
from convflow.errors import ArgumentError


def _filters(dtype, ndim, kernels, modes, method="auto"):
    return [
        make_filter(
            dtype, ndim, k, flip=True, mode=m, cval=0.25, origin=0, axes=None, method=method, dtype=None
        )
        for k, m in zip(kernels, modes, strict=True)
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunks", [(5, 4, 3), (2, 1, 2)])  # (2, 1, 2): chunks below the halo
def test_filtered_blocks_are_the_dask_arrays_bytes_and_match_scipy(rng, mode, chunks):
    data = rng.random((13, 11, 9)).astype(np.float32)
    image = da.from_array(data, chunks=chunks)
    kernels = [rng.random((3, 4, 2)), rng.random((2, 3, 3))]  # even sizes too
    filters = _filters(image.dtype, 3, kernels, [mode, "wrap"])
    passes = describe_stack(filters, image.chunks)
    expected = run_filters(image, filters, passes).compute(scheduler="synchronous")
    got = to_dask(filter_blocks(from_dask(image), passes)).compute(scheduler="synchronous")
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.tobytes()
    oracle = ndi.convolve(
        ndi.convolve(data.astype(np.float64), kernels[0], mode=mode, cval=0.25), kernels[1], mode="wrap"
    )
    np.testing.assert_allclose(got, oracle, rtol=1e-4, atol=1e-4)


@settings(max_examples=25, deadline=None)  # each example builds and computes a few small graphs
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=6),
    target=st.lists(st.integers(1, 5), min_size=1, max_size=6),
)
def test_regridded_blocks_hold_the_same_values(sizes, target):
    data = np.arange(sum(sizes), dtype=np.int16)
    total = sum(sizes)
    cuts = []
    for t in target:
        if sum(cuts) + t >= total:
            break
        cuts.append(t)
    cuts.append(total - sum(cuts))
    source = from_dask(da.from_array(data, chunks=(tuple(sizes),)))
    got = to_dask(Regrid(source, (tuple(cuts),))).compute(scheduler="synchronous")
    np.testing.assert_array_equal(got, data)


def test_combined_blocks_are_the_dask_combines_bytes(rng):
    a = da.from_array(rng.random((6, 7)).astype(np.float32), chunks=(2, 3))
    b = da.from_array(rng.random((6, 7)), chunks=(3, 4))  # other chunks, other dtype
    expected = combine("magnitude", a, b).compute(scheduler="synchronous")
    got = to_dask(combine_blocks("magnitude", [from_dask(a), from_dask(b)])).compute(scheduler="synchronous")
    assert (got.dtype, got.tobytes()) == (expected.dtype, expected.tobytes())
    with pytest.raises(ArgumentError, match=r"needs images of one shape, got shapes \[\(6, 7\), \(7, 6\)\]"):
        combine_blocks("add", [from_dask(a), from_dask(a.T)])


def test_a_leading_position_is_taken_from_its_block(rng):
    data = rng.random((5, 4, 3))
    x = from_dask(da.from_array(data, chunks=(2, 3, 3)))
    for position in range(5):
        np.testing.assert_array_equal(to_dask(take_blocks(x, position)).compute(), data[position])


def test_an_array_read_by_slicing_is_read_without_its_dask_graph():
    class Huge:  # 2^48 voxels: a dask graph of it would hold 134 million tasks
        shape, dtype, ndim = (65536,) * 3, np.dtype(np.uint16), 3

        def __getitem__(self, region):
            return np.zeros(tuple(r.stop - r.start for r in region), self.dtype)

    image = da.from_array(
        Huge(), chunks=128, name="huge", asarray=False, fancy=False, meta=np.empty((0,) * 3, np.uint16)
    )
    source = from_dask(image)
    assert isinstance(source, Source)
    filters = _filters(image.dtype, 3, [np.ones((3, 3, 3))], ["reflect"])
    result = filter_blocks(source, describe_stack(filters, image.chunks))
    graph, keys = block_graph([(result, [(0, 0, 0), (511, 511, 511)])])
    # Each output block: 8 input chunks at a corner, its padded block and its filter task.
    assert len(keys) == 2
    assert len(graph) == 2 * (8 + 2)
    assert isinstance(from_dask(image + 1), DaskSource)


# ---- full and valid results (engine/_shapes.py shaped_blocks, #12) ---------------------------------


@pytest.mark.parametrize("shape", ["full", "valid"])
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap", "nearest"])
@pytest.mark.parametrize("chunks", [(5, 4), (2, 1), (13, 3)], ids=["mid", "below-the-halo", "uneven"])
def test_full_and_valid_blocks_are_the_bytes_of_the_grown_dask_array_filtered_and_trimmed(
    rng, shape, mode, chunks
):
    # The dask composition a full or valid stage was before #12: the image grown at its edges (the
    # values np.pad gives, in the grown chunks), run_filters over it, then trimmed by slicing.
    image = rng.random((13, 11)).astype(np.float32)
    (filt,) = _filters(image.dtype, 2, [rng.random((3, 4))], [mode])
    blocks = shaped_blocks(from_dask(da.from_array(image, chunks=chunks)), [filt], shape)
    grow, trim = margins(filt, shape, 2)
    grown = da.from_array(_halo.pad(image, grow, filt.mode, filt.cval, filt.compute_dtype))
    grown = grown.rechunk(
        tuple(_grown(c, b, a) for c, (b, a) in zip(da.from_array(image, chunks).chunks, grow, strict=True))
    )
    whole = run_filters(grown, [filt])
    expected = whole[tuple(slice(b, n - a) for n, (b, a) in zip(whole.shape, trim, strict=True))]
    assert blocks.chunks == expected.chunks
    got = to_dask(blocks).compute(scheduler="synchronous")
    assert got.dtype == expected.dtype
    assert got.tobytes() == expected.compute(scheduler="synchronous").tobytes()
