"""The one table of boundary modes and aliases, and what each reads past an edge."""

from __future__ import annotations

import difflib

import numpy as np

from convflow.errors import ModeError

# scipy.ndimage's full set for filters.  For filters (unlike interpolation)
# scipy treats grid-wrap as wrap, grid-mirror as reflect and grid-constant as
# constant; tests/engine/test_modes.py checks each entry against scipy itself.
MODES = (
    "reflect",
    "mirror",
    "nearest",
    "wrap",
    "constant",
    "grid-wrap",
    "grid-mirror",
    "grid-constant",
)

# scipy.signal's names.
ALIASES = {"symm": "reflect", "fill": "constant", "circular": "wrap"}

_EXTENSION = {
    "reflect": "reflect",
    "grid-mirror": "reflect",
    "mirror": "mirror",
    "nearest": "nearest",
    "wrap": "wrap",
    "grid-wrap": "wrap",
    "constant": "constant",
    "grid-constant": "constant",
}


def parse_mode(mode: object) -> str:
    """Return the scipy name of `mode` (aliases resolved) or raise ModeError.

    Examples
    --------
    >>> parse_mode("symm")
    'reflect'
    """
    if isinstance(mode, str):
        if mode in MODES:
            return mode
        if mode in ALIASES:
            return ALIASES[mode]
    valid = list(MODES) + list(ALIASES)
    hint = difflib.get_close_matches(str(mode), valid, n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ModeError(
        f"mode={mode!r} is not a boundary mode.{did_you_mean} "
        f"Valid modes: {', '.join(MODES)}; aliases: " + ", ".join(f"{a}={m}" for a, m in ALIASES.items())
    )


def is_constant(mode: str) -> bool:
    """Whether `mode` fills the outside with `cval` instead of reading the image."""
    return _EXTENSION[mode] == "constant"


def source_index(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map positions along an axis of length `size` to the positions they read.

    Positions inside ``[0, size)`` map to themselves; positions outside map as
    the (non-constant) `mode` extends the axis, any distance past the edge.

    Examples
    --------
    >>> source_index(np.arange(-3, 0), 4, "reflect")
    array([2, 1, 0])
    >>> source_index(np.arange(4, 7), 4, "mirror")
    array([2, 1, 0])
    >>> source_index(np.arange(-2, 0), 4, "wrap")
    array([2, 3])
    """
    kind = _EXTENSION[mode]
    index = np.asarray(index, dtype=np.int64)
    if kind == "nearest":
        return np.clip(index, 0, size - 1)
    if kind == "wrap":
        return np.mod(index, size)
    if kind == "reflect":
        folded = np.mod(index, 2 * size)
        return np.where(folded >= size, 2 * size - 1 - folded, folded)
    if kind == "mirror":
        if size == 1:
            return np.zeros_like(index)
        folded = np.mod(index, 2 * size - 2)
        return np.where(folded >= size, 2 * size - 2 - folded, folded)
    raise ModeError(f"mode {mode!r} reads no image values outside the edge")
