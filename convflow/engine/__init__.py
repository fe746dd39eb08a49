"""The exact block math: convolve and correlate, stacks of steps, halos, modes, methods and dtypes.

Everything here works on numpy and dask arrays and knows nothing of configs,
plans or files: `convflow.config`, `convflow.pipeline` and `convflow.io`
build on it, never the other way round.  `describe_stack` says what a stack
of checked filters will do (its passes, summed halos, working chunks and the
method of each step, with the reason); `run_filters` does exactly that, and
``convflow plan`` reports it.

Names load on first use, as scikit-image's subpackages load theirs: a config
checks its modes, methods and dtypes with the engine's own parsers without
importing dask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name, and the private module that defines it.
_HOMES = {
    "SPATIAL": "_axes",
    "BlockArray": "_blocks",
    "block_graph": "_blocks",
    "combine_blocks": "_blocks",
    "filter_blocks": "_blocks",
    "from_dask": "_blocks",
    "sliced": "_blocks",
    "take_blocks": "_blocks",
    "to_dask": "_blocks",
    "parse_axes": "_axes",
    "CONVENTIONS": "_conventions",
    "SHAPES": "_conventions",
    "parse_shape": "_conventions",
    "signal_origin": "_conventions",
    "convolve": "_convolve",
    "correlate": "_convolve",
    "cast_result": "_dtypes",
    "compute_dtype": "_dtypes",
    "parse_result_dtype": "_dtypes",
    "Filter": "_filter",
    "make_filter": "_filter",
    "Pass": "_fused",
    "describe_stack": "_fused",
    "run_filters": "_fused",
    "sum_halos": "_fused",
    "minimum_chunks": "_halo",
    "METHODS": "_methods",
    "MODES": "_modes",
    "parse_mode": "_modes",
    "COMBINE_OPS": "_ops",
    "describe_shaped": "_shapes",
    "shaped_blocks": "_shapes",
    "run_shaped": "_shapes",
    "shape_groups": "_shapes",
    "shaped_size": "_shapes",
    "ONE_SOURCE_OPS": "_ops",
    "OPS": "_ops",
    "Step": "_stack",
    "apply_stack": "_stack",
    "combine": "_stack",
}

__all__ = [
    "COMBINE_OPS",
    "CONVENTIONS",
    "METHODS",
    "MODES",
    "ONE_SOURCE_OPS",
    "OPS",
    "SHAPES",
    "SPATIAL",
    "BlockArray",
    "Filter",
    "Pass",
    "Step",
    "apply_stack",
    "block_graph",
    "cast_result",
    "combine",
    "combine_blocks",
    "compute_dtype",
    "convolve",
    "correlate",
    "describe_shaped",
    "describe_stack",
    "filter_blocks",
    "from_dask",
    "make_filter",
    "minimum_chunks",
    "parse_axes",
    "parse_mode",
    "parse_result_dtype",
    "parse_shape",
    "run_filters",
    "run_shaped",
    "shape_groups",
    "shaped_blocks",
    "shaped_size",
    "signal_origin",
    "sliced",
    "sum_halos",
    "take_blocks",
    "to_dask",
]

if TYPE_CHECKING:
    from convflow.engine._axes import SPATIAL, parse_axes
    from convflow.engine._blocks import (
        BlockArray,
        block_graph,
        combine_blocks,
        filter_blocks,
        from_dask,
        sliced,
        take_blocks,
        to_dask,
    )
    from convflow.engine._conventions import CONVENTIONS, SHAPES, parse_shape, signal_origin
    from convflow.engine._convolve import convolve, correlate
    from convflow.engine._dtypes import cast_result, compute_dtype, parse_result_dtype
    from convflow.engine._filter import Filter, make_filter
    from convflow.engine._fused import Pass, describe_stack, run_filters, sum_halos
    from convflow.engine._halo import minimum_chunks
    from convflow.engine._methods import METHODS
    from convflow.engine._modes import MODES, parse_mode
    from convflow.engine._ops import COMBINE_OPS, ONE_SOURCE_OPS, OPS
    from convflow.engine._shapes import (
        describe_shaped,
        run_shaped,
        shape_groups,
        shaped_blocks,
        shaped_size,
    )
    from convflow.engine._stack import Step, apply_stack, combine


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return list(__all__)
