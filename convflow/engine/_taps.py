"""The tap-sum kernel of the direct method, compiled by numba.

A valid correlation with a few weights is a sum of shifted, scaled copies of
the block.  numpy makes two passes over memory per weight (a product, then a
sum); this loop makes one, line by line, with the output line in cache, and
runs without the GIL.  It sums the weights in the order given, in the
block's dtype, so results equal the numpy formulation bit for bit.
Imported only when a block needs it: importing numba takes a moment, and the
compiled code is cached on disk after the first run.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def tap_lines(
    source: np.ndarray,
    out: np.ndarray,
    starts: np.ndarray,
    offsets: np.ndarray,
    weights: np.ndarray,
    length: int,
) -> None:  # pragma: no cover - compiled; tested through correlate_direct
    """Add ``weights[t] * source[starts[i] + offsets[t] + x]`` into ``out[i * length + x]``.

    `source` and `out` are flat; output line ``i`` reads input lines from
    ``starts[i]``, shifted by each weight's offset.
    """
    for line in range(starts.size):
        # Slices, not flat indices: the loop below then compiles to vector instructions.
        target = out[line * length : (line + 1) * length]
        for tap in range(offsets.size):
            weight = weights[tap]
            start = starts[line] + offsets[tap]
            values = source[start : start + length]
            for x in range(length):
                target[x] += weight * values[x]
