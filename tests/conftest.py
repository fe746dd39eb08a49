"""Fixtures shared by the engine tests; the oracle itself lives in tests/_oracle.py."""

from __future__ import annotations

from collections.abc import Callable

import dask.array as da
import numpy as np
import pytest
from _oracle import ComputedTooEarly
from numpy.typing import DTypeLike


def _explode(block: np.ndarray) -> np.ndarray:
    raise ComputedTooEarly(f"a block of shape {block.shape} was computed")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator, so every failure reproduces."""
    return np.random.default_rng(20261125)


@pytest.fixture
def exploding() -> Callable[..., da.Array]:
    """Make a dask array whose blocks raise ComputedTooEarly if anything computes them."""

    def make(shape: tuple[int, ...] = (6, 8), dtype: DTypeLike = np.float64, chunks: object = 3) -> da.Array:
        zeros = da.zeros(shape, dtype=dtype, chunks=chunks)
        meta = np.empty((0,) * len(shape), dtype=dtype)
        return zeros.map_blocks(_explode, dtype=dtype, meta=meta)

    return make
