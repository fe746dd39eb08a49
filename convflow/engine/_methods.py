"""Block math: valid correlation of a padded block by direct, separable or FFT means.

Every method here computes the same thing: the *valid* correlation of a
padded block with a kernel over `axes`,

    out[p] = sum_j weights[j] * block[p + j]        (along each kernel axis)

so its output is smaller than the block by ``n - 1`` along each kernel axis
of size ``n``.  Modes, origins and halos are settled before a block gets
here (see `_halo`), which keeps each method a few lines of plain math.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from convflow.engine._blas import one_blas_thread
from convflow.engine._terms import (  # Term, SEPARABLE_RTOL and separable_terms: known here too
    SEPARABLE_RTOL,
    Tap,
    Term,
    plan_sum,
    plan_summary,
    separable_terms,
)
from convflow.errors import ArgumentError, MethodError

__all__ = [
    "METHODS",
    "SEPARABLE_RTOL",
    "Term",
    "check_method",
    "choose_method",
    "correlate_block",
    "estimate_costs",
    "parse_method",
    "separable_terms",
]

METHODS = ("auto", "direct", "separable", "fft")

# Cost model, in seconds, measured with benchmarks/calibrate.py (which prints
# these numbers for another machine) on the 2-core development machine, an AMD
# EPYC VM shared with other jobs (2026-11-25, numpy 2.4.6, scipy 1.17.1, one
# thread, best of 3 on float32 cubes of 66-144 voxels).  Runs under load drift
# by up to 40%, and COST_GEMM and COST_BAND trade off (0.22-0.58 and
# 0.021-0.030 in four runs), but every run kept the choice on W1-W4; since
# the tap sums are compiled (numba) W5's Sobel goes direct (34 ms a block,
# separable 149).
#   direct:    scipy.ndimage.correlate, per padded voxel and nonzero weight
#   taps:      compiled tap sums (kernels of at most TAPS_MAX weights), per
#              output voxel and nonzero weight
#   gemm:      fixed cost of one banded-GEMM 1-D pass, per input voxel
#   band:      GEMM multiply-adds, per output voxel and band row
#              (GEMM_TILE + n - 1 rows for n taps)
#   line:      scipy.ndimage.correlate1d (float32 vectors past TAPS_MAX taps),
#              per voxel and tap (timed on symmetric vectors, which scipy folds
#              to half the products; a constant vector, a running sum, counts 1)
#   pass:      fixed cost of one such scipy 1-D pass, per voxel
#   fft:       scipy.signal.fftconvolve, per fast-length voxel and log2 of it
#   add:       adding a scaled partial result into a sum of separable terms,
#              per output voxel (``out += c * part`` on 128^3 float32, timed
#              alone, 0.68-0.89 ns, 2026-12-03; not fitted by calibrate.py)
COST_DIRECT = 0.766e-9
COST_TAPS = 0.115e-9
COST_GEMM = 0.219e-9
COST_BAND = 0.0298e-9
COST_LINE = 0.228e-9
COST_PASS = 3e-9
COST_FFT = 1.22e-9
COST_ADD = 0.7e-9


def valid_shape(
    block_shape: tuple[int, ...], kernel_shape: tuple[int, ...], axes: tuple[int, ...]
) -> tuple[int, ...]:
    """Shape of the valid correlation of a block with a kernel over `axes`."""
    shape = list(block_shape)
    for axis, n in zip(axes, kernel_shape, strict=True):
        shape[axis] -= n - 1
    return tuple(shape)


def _valid_slice(ndim: int, axis: int, n: int, length: int) -> tuple[slice, ...]:
    """Where a same-size, origin-0 scipy filter of size `n` holds the valid values."""
    index = [slice(None)] * ndim
    index[axis] = slice(n // 2, n // 2 + length)
    return tuple(index)


def correlate_direct(
    block: np.ndarray, weights: np.ndarray, axes: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Valid correlation, one weight at a time.

    Small kernels are summed tap by tap, line by line (`convflow.engine._taps`), in `dtype`;
    larger ones go to scipy.ndimage.correlate, which sums in float64.  Either
    way weights of magnitude at most DBL_EPSILON are skipped, as scipy skips
    them, so NaN spreads to exactly the same places.
    """
    if np.count_nonzero(np.abs(weights) > _SKIPPED_WEIGHT) <= TAPS_MAX:
        return _correlate_taps(block, weights, axes, dtype)
    full = ndi.correlate(block, weights, output=dtype, mode="constant", axes=axes)
    out_shape = valid_shape(block.shape, weights.shape, axes)
    index = [slice(None)] * block.ndim
    for axis, n in zip(axes, weights.shape, strict=True):
        index[axis] = slice(n // 2, n // 2 + out_shape[axis])
    return full[tuple(index)]


# Summing n products in float32 errs by at most n * 2**-24 of sum|k| * max|x|
# (Higham's bound); 64 taps keep that under 4e-6, inside the 1e-5 tolerance.
TAPS_MAX = 64
_SKIPPED_WEIGHT = np.finfo(np.float64).eps


def _correlate_taps(
    block: np.ndarray, weights: np.ndarray, axes: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Valid correlation as a sum of shifted, scaled copies, line by line along the last axis."""
    from convflow.engine._taps import tap_lines  # numba: imported (and compiled) on first use

    out_shape = valid_shape(block.shape, weights.shape, axes)
    out = np.zeros(out_shape, dtype=dtype)
    taps = [offset for offset in np.ndindex(weights.shape) if abs(weights[offset]) > _SKIPPED_WEIGHT]
    if not taps or out.size == 0:
        return out
    source = np.ascontiguousarray(block, dtype=dtype)
    strides = [stride // source.itemsize for stride in source.strides]
    # Where each weight's copy starts in the flat block, and where each output line's reading starts.
    offsets = np.array(
        [sum(o * strides[axis] for o, axis in zip(offset, axes, strict=True)) for offset in taps], np.int64
    )
    starts = np.zeros(1, dtype=np.int64)
    for size, stride in zip(out_shape[:-1], strides[:-1], strict=True):
        starts = (starts[:, None] + np.arange(size, dtype=np.int64) * stride).ravel()
    values = np.array([weights[offset] for offset in taps], dtype=dtype)
    tap_lines(source.reshape(-1), out.reshape(-1), starts, offsets, values, out_shape[-1])
    return out


def correlate_separable(
    block: np.ndarray, terms: tuple[Term, ...], axes: tuple[int, ...], dtype: np.dtype, gemm: bool = True
) -> np.ndarray:
    """Valid correlation as a sum of separable terms, passes shared as `_terms.plan_sum` says.

    Partial results along all but the last kernel axis are computed once
    for every term that starts with them; terms ending in the same last
    vector are summed first and pass through it once; a single weight is a
    view of its input.  scipy's passes if not `gemm`.
    """
    plan = plan_sum(terms)
    uses = plan.uses()
    partials: list[np.ndarray | None] = [block] + [None] * (len(plan.nodes) - 1)

    def take(index: int) -> np.ndarray:
        """A partial result, forgotten once its last user has it: intermediates are whole blocks."""
        value = partials[index]
        uses[index] -= 1
        if uses[index] == 0:
            partials[index] = None
        assert value is not None  # parents come first: a bug in plan_sum, never a user error
        return value

    for index, node in enumerate(plan.nodes[1:], start=1):
        assert node.tap is not None
        partials[index] = _tap_pass(take(node.parent), node.tap, axes[node.level], dtype, gemm)
    result: np.ndarray | None = None
    for group in plan.groups:
        if len(group.members) == 1:
            (scale, index), source = group.members[0], None
            source = take(index)
        else:
            scale, source = 1.0, None
            for coef, index in group.members:
                part = take(index) * dtype.type(coef)
                source = part if source is None else np.add(source, part, out=source)
        assert source is not None
        if group.tap.is_slice:
            moved = _tap_pass(source, group.tap, axes[-1], dtype, gemm)
            if result is None:
                result = moved * dtype.type(scale)  # a new array: `moved` may be a view of the block
            elif scale == 1.0:
                result += moved
            else:
                result += moved * dtype.type(scale)
        else:
            part = _tap_pass(source, group.tap, axes[-1], dtype, gemm, scale)
            result = part if result is None else np.add(result, part, out=result)
    if result is None:  # every term was zero
        return np.zeros(valid_shape(block.shape, tuple(v.size for v in terms[0].vectors), axes), dtype=dtype)
    return np.asarray(result, dtype=dtype)


def _tap_pass(
    values: np.ndarray, tap: Tap, axis: int, dtype: np.dtype, gemm: bool, scale: float = 1.0
) -> np.ndarray:
    """One trimmed vector's valid pass along `axis`: a view for a single weight of 1."""
    valid = values.shape[axis] - (tap.size - 1)
    if tap.is_slice and scale == 1.0:
        index = [slice(None)] * values.ndim
        index[axis] = slice(tap.start, tap.start + valid)
        return values[tuple(index)]
    vector = tap.weights * scale if scale != 1.0 else tap.weights
    return _pass_1d(values, vector, axis, dtype, gemm, start=tap.start, valid=valid)


def _pass_1d(
    block: np.ndarray,
    vector: np.ndarray,
    axis: int,
    dtype: np.dtype,
    gemm: bool = True,
    start: int = 0,
    valid: int | None = None,
) -> np.ndarray:
    """One valid 1-D correlation pass along `axis`, a banded matrix product where it can be.

    The pass reads from `start` along the axis and gives `valid` outputs
    (default: all the block holds).  A GEMM sums in `dtype`, so float32
    takes it only up to TAPS_MAX taps; past that, scipy sums in float64 (a
    constant vector as a running sum).
    """
    n = vector.size
    if valid is None:
        valid = block.shape[axis] - start - (n - 1)
    if n == 1 or not gemm or (n > TAPS_MAX and dtype != np.float64):
        index = [slice(None)] * block.ndim
        index[axis] = slice(start, start + valid + n - 1)
        block = block[tuple(index)]
        if n == 1:
            return block * dtype.type(vector[0])
        return _pass_scipy(block, vector, axis, dtype, running_sum=n > TAPS_MAX and _is_constant(vector))
    return _pass_gemm(block, vector, axis, dtype, start, valid)


def _is_constant(vector: np.ndarray) -> bool:
    """Whether every weight equals the first: a box, which scipy can sum as a running sum."""
    return bool(np.all(vector == vector[0]))


def _pass_scipy(
    block: np.ndarray, vector: np.ndarray, axis: int, dtype: np.dtype, running_sum: bool
) -> np.ndarray:
    """One valid 1-D pass by scipy.ndimage: correlate1d, or uniform_filter1d's running sum."""
    n = vector.size
    if running_sum:
        full = ndi.uniform_filter1d(block, n, axis=axis, output=dtype, mode="constant")
        full *= dtype.type(vector[0] * n)
    else:
        full = ndi.correlate1d(block, vector, axis=axis, output=dtype, mode="constant")
    return full[_valid_slice(block.ndim, axis, n, block.shape[axis] - (n - 1))]


# Outputs per GEMM tile: the band has GEMM_TILE + n - 1 rows, n of them
# useful.  On 144^3 blocks (one thread, 2026-11-25) tiles of 8, 12 and 16
# stayed within the load noise (20%) of one another for 3-65 taps on every
# axis, and 32 or 64 were up to 1.5x slower even at 65-97 taps; 16 it is.
GEMM_TILE = 16

# Multiply-adds per matrix product.  Products run on the calling thread
# (`one_blas_thread`), which dask parallelises: OpenBLAS's own threads, on
# cores that are busy already (dask's threads, other jobs), waited for one
# another, and a pass took 3-25x longer.
_GEMM_SIZE = 1 << 19


def _band(vector: np.ndarray, width: int, dtype: np.dtype) -> np.ndarray:
    """The (width + n - 1, width) band matrix whose column j holds `vector` from row j on.

    Examples
    --------
    >>> _band(np.array([1.0, 2.0]), 3, np.dtype(np.float64))
    array([[1., 0., 0.],
           [2., 1., 0.],
           [0., 2., 1.],
           [0., 0., 2.]])
    """
    band = np.zeros((width + vector.size - 1, width), dtype=dtype)
    for j in range(width):
        band[j : j + vector.size, j] = vector
    return band


def _pass_gemm(
    block: np.ndarray,
    vector: np.ndarray,
    axis: int,
    dtype: np.dtype,
    first_read: int = 0,
    valid: int | None = None,
) -> np.ndarray:
    """Valid correlation along `axis` as a banded matrix product, GEMM_TILE outputs at a time.

    The block is seen as (before, length, after); outputs ``s .. s + w`` of
    every line are its inputs ``first_read + s .. first_read + s + w + n - 1``
    times the band matrix.  `valid` outputs (default: as many as fit).  The
    products run on one BLAS thread (`one_blas_thread`), so their sums, and
    the bytes written, do not depend on the BLAS's threading.
    """
    n, length = vector.size, block.shape[axis]
    if valid is None:
        valid = length - first_read - (n - 1)
    before, after = math.prod(block.shape[:axis]), math.prod(block.shape[axis + 1 :])
    lines = np.ascontiguousarray(block, dtype=dtype).reshape(before, length, after)
    out = np.empty((before, valid, after), dtype=dtype)
    band = _band(vector, GEMM_TILE, dtype)
    piece = max(1, _GEMM_SIZE // (GEMM_TILE * (GEMM_TILE + n - 1)))
    with one_blas_thread():
        if after == 1:
            # The last axis: lines are matrix rows, `piece` at a time, times the band.
            rows, out_rows = lines[:, :, 0], out[:, :, 0]
            for first in range(0, before, piece):
                for start in range(0, valid, GEMM_TILE):
                    width = min(GEMM_TILE, valid - start)
                    reads = rows[
                        first : first + piece, first_read + start : first_read + start + width + n - 1
                    ]
                    target = out_rows[first : first + piece, start : start + width]
                    np.matmul(reads, band[: width + n - 1, :width], out=target)
        else:
            # Any other axis: the band, transposed, times every (reads, piece) slab.
            band_t = np.ascontiguousarray(band.T)
            for first in range(0, after, piece):
                for start in range(0, valid, GEMM_TILE):
                    width = min(GEMM_TILE, valid - start)
                    reads = lines[
                        :, first_read + start : first_read + start + width + n - 1, first : first + piece
                    ]
                    target = out[:, start : start + width, first : first + piece]
                    np.matmul(band_t[:width, : width + n - 1], reads, out=target)
    shape = list(block.shape)
    shape[axis] = valid
    return out.reshape(shape)


def correlate_fft(
    block: np.ndarray, weights: np.ndarray, axes: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """Valid correlation by FFT: convolution with the flipped kernel, 'valid' part."""
    # Imported here: scipy.signal takes about 0.65 s to import, which every CLI start would pay.
    import scipy.signal

    flipped = np.flip(weights).astype(dtype, copy=False)
    shape = [1] * block.ndim
    for axis, n in zip(axes, weights.shape, strict=True):
        shape[axis] = n
    result = scipy.signal.fftconvolve(
        block.astype(dtype, copy=False), flipped.reshape(shape), mode="valid", axes=axes
    )
    return np.asarray(result, dtype=dtype)


def parse_method(method: object) -> str:
    """Return `method` if it is one of METHODS, else raise ArgumentError."""
    if method not in METHODS:
        raise ArgumentError(f"method={method!r} is not a method; use one of {', '.join(METHODS)}")
    return str(method)


def check_method(method: str, weights: np.ndarray, terms: tuple[Term, ...] | None) -> None:
    """Raise MethodError if `method` cannot run this kernel (``separable`` on a non-separable one)."""
    if method == "separable" and terms is None:
        raise MethodError(
            f"method='separable' needs a separable kernel, and this {weights.shape} kernel "
            f"is not a sum of outer products of 1-D vectors (relative L1 tolerance "
            f"{SEPARABLE_RTOL:g}); use method='direct', 'fft' or 'auto'"
        )


def estimate_costs(
    weights: np.ndarray,
    terms: tuple[Term, ...] | None,
    block_shape: tuple[int, ...],
    axes: tuple[int, ...],
) -> dict[str, float]:
    """Seconds each exact method should take for one padded block of `block_shape`."""
    padded = math.prod(block_shape)
    nonzero = max(1, int(np.count_nonzero(np.abs(weights) > _SKIPPED_WEIGHT)))
    if nonzero <= TAPS_MAX:
        direct = COST_TAPS * math.prod(valid_shape(block_shape, weights.shape, axes)) * nonzero
    else:
        direct = COST_DIRECT * padded * nonzero
    costs = {"direct": direct}
    if terms is not None:
        costs["separable"] = _separable_cost(terms, block_shape, axes)
    fast = [scipy.fft.next_fast_len(n, real=True) if a in axes else n for a, n in enumerate(block_shape)]
    fast_size = math.prod(fast)
    costs["fft"] = COST_FFT * fast_size * max(1.0, math.log2(max(2, fast_size)))
    return costs


def _separable_cost(terms: tuple[Term, ...], block_shape: tuple[int, ...], axes: tuple[int, ...]) -> float:
    """Seconds of `correlate_separable` on one block: its passes as `plan_sum` shares them, and its adds."""
    plan = plan_sum(terms)
    shapes = [tuple(block_shape)]
    seconds = 0.0

    def through(shape: tuple[int, ...], tap: Tap, axis: int) -> tuple[tuple[int, ...], float]:
        out = list(shape)
        out[axis] -= tap.size - 1
        if tap.is_slice:
            return tuple(out), 0.0
        reads = list(out)
        reads[axis] += tap.weights.size - 1  # the trimmed vector reads only its window
        return tuple(out), _pass_cost(tap.weights, math.prod(reads), math.prod(out))

    for node in plan.nodes[1:]:
        assert node.tap is not None
        shape, cost = through(shapes[node.parent], node.tap, axes[node.level])
        shapes.append(shape)
        seconds += cost
    for number, group in enumerate(plan.groups):
        source = shapes[group.members[0][1]]
        if len(group.members) > 1:
            seconds += COST_ADD * math.prod(source) * len(group.members)
        out, cost = through(source, group.tap, axes[-1])
        seconds += cost + (COST_ADD * math.prod(out) if number or group.tap.is_slice else 0.0)
    return seconds


def _pass_cost(vector: np.ndarray, inputs: int, outputs: int) -> float:
    """Seconds of one `_pass_1d` from `inputs` to `outputs` values, as float32 runs it.

    Past TAPS_MAX taps that is scipy's pass, which float64 replaces by a
    GEMM; the model takes the slower one, as float32 is the common case.
    """
    n = vector.size
    if n > TAPS_MAX:
        taps = 1 if _is_constant(vector) else n
        return inputs * (COST_PASS + COST_LINE * taps)
    band = GEMM_TILE + n - 1 if n > 1 else 0  # one tap is a plain product
    return inputs * COST_GEMM + outputs * COST_BAND * band


def choose_method(
    method: str,
    weights: np.ndarray,
    terms: tuple[Term, ...] | None,
    block_shape: tuple[int, ...],
    axes: tuple[int, ...],
) -> tuple[str, str]:
    """Return the method to use and why: `method` itself, or the cheapest for 'auto'."""
    if method != "auto":
        return method, "requested"
    costs = estimate_costs(weights, terms, block_shape, axes)
    best = min(costs, key=costs.__getitem__)
    labels = {name: name for name in costs}
    if terms is not None and len(terms) > 1:
        labels["separable"] = f"separable ({plan_summary(terms)})"
    listed = ", ".join(
        f"{labels[name]} {seconds * 1e3:.3g} ms"
        for name, seconds in sorted(costs.items(), key=lambda c: c[1])
    )
    return best, f"cheapest estimate per block: {listed}"


def correlate_block(
    block: np.ndarray,
    weights: np.ndarray,
    terms: tuple[Term, ...] | None,
    axes: tuple[int, ...],
    method: str,
    dtype: np.dtype,
) -> np.ndarray:
    """Valid correlation of one padded block by `method`, in `dtype`.

    A separable or FFT result that is not all finite is recomputed the direct
    way, so NaN and infinity spread exactly as scipy spreads them: an FFT
    smears one NaN over the whole block, a GEMM pass over a whole tile row,
    and any separable pass multiplies it by the zero weights scipy skips.
    """
    block = block.astype(dtype, copy=False)
    if method not in ("separable", "fft"):
        return correlate_direct(block, weights, axes, dtype)
    # Checking the result rather than the block is exact: an FFT uses every
    # block value in every result value, and a sum of separable terms uses
    # every block value that a nonzero weight of the kernel reaches (each
    # such weight lies in some term's trimmed window, whose passes multiply
    # zero weights too), and no sum or product turns NaN or infinity finite
    # again: infinities of opposite signs from two terms make NaN.  So a
    # finite result comes from a block that is finite wherever the direct
    # way reads it, and costs one pass over the result, no more than checking
    # the block did.
    with np.errstate(invalid="ignore", over="ignore"):
        if method == "fft":
            result = correlate_fft(block, weights, axes, dtype)
        else:
            result = correlate_separable(block, terms, axes, dtype)
        finite = np.isfinite(result).all()
        if method == "separable" and not finite and np.isfinite(block).all():
            # A float32 GEMM sum overflowed; scipy's passes sum in float64.
            result = correlate_separable(block, terms, axes, dtype, gemm=False)
            finite = np.isfinite(result).all()
    return result if finite else correlate_direct(block, weights, axes, dtype)
