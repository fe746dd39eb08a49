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
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.ndimage as ndi

from convflow.errors import ArgumentError, MethodError

METHODS = ("auto", "direct", "separable", "fft")

# A kernel is taken as a sum of outer products when dropping the rest changes
# it by at most this much, relative, in the L1 norm: the output then moves by
# at most 1e-10 * sum|k| * max|x|, ten times inside the float64 tolerance.
SEPARABLE_RTOL = 1e-10

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
COST_DIRECT = 0.766e-9
COST_TAPS = 0.115e-9
COST_GEMM = 0.219e-9
COST_BAND = 0.0298e-9
COST_LINE = 0.228e-9
COST_PASS = 3e-9
COST_FFT = 1.22e-9


@dataclass(frozen=True)
class Term:
    """One separable term: the kernel equals the sum of ``coef * outer(*vectors)``."""

    coef: float
    vectors: tuple[np.ndarray, ...]


def separable_terms(
    weights: np.ndarray, factors: tuple[np.ndarray, ...] | None = None
) -> tuple[Term, ...] | None:
    """Return the kernel as a short sum of outer products of 1-D vectors, or None.

    `factors`, when the kernel object knows them, is trusted after a check.
    Any dimensionality gets a rank-1 test; 2-D kernels may use several
    terms (from the SVD) when the remaining singular values vanish.

    Examples
    --------
    >>> terms = separable_terms(np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]))
    >>> len(terms)
    1
    >>> separable_terms(np.random.default_rng(0).random((3, 3, 3))) is None
    True
    """
    weights = np.asarray(weights, dtype=np.float64)
    scale = np.abs(weights).sum()
    if scale == 0:
        return None
    if factors is not None:
        term = Term(1.0, tuple(np.asarray(f, dtype=np.float64) for f in factors))
        if _residual((term,), weights) <= SEPARABLE_RTOL * scale:
            return (term,)
    if weights.ndim == 1:
        return (Term(1.0, (weights,)),)
    rank1 = _rank_one(weights)
    if _residual((rank1,), weights) <= SEPARABLE_RTOL * scale:
        return (rank1,)
    if weights.ndim == 2:
        u, s, vt = np.linalg.svd(weights)
        for rank in range(2, len(s)):
            terms = tuple(Term(float(s[i]), (u[:, i], vt[i])) for i in range(rank))
            if _residual(terms, weights) <= SEPARABLE_RTOL * scale:
                return terms
    return None


def _rank_one(weights: np.ndarray) -> Term:
    """Best rank-1 fit: the leading singular vector of each axis's unfolding."""
    vectors = []
    for axis in range(weights.ndim):
        unfolded = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
        u, _, _ = np.linalg.svd(unfolded, full_matrices=False)
        vectors.append(_snap_constant(u[:, 0]))
    coef = weights
    for vector in vectors:
        coef = np.tensordot(vector, coef, axes=(0, 0))
    return Term(float(coef), tuple(vectors))


def _snap_constant(vector: np.ndarray) -> np.ndarray:
    """A vector equal to its mean up to SVD rounding, made exactly constant.

    A box given as a dense array factors into vectors that differ by about
    1e-16; exactly constant ones, past TAPS_MAX taps in float32, take the
    running-sum pass.  The residual check that follows still decides whether
    the factorisation is exact.

    Examples
    --------
    >>> _snap_constant(np.array([0.5, 0.5 + 1e-17, 0.5 - 1e-17]))
    array([0.5, 0.5, 0.5])
    """
    mean = vector.mean()
    if np.abs(vector - mean).max() <= 1e-12 * np.abs(vector).max():
        return np.full_like(vector, mean)
    return vector


def _residual(terms: tuple[Term, ...], weights: np.ndarray) -> float:
    """L1 distance between a kernel and the sum of its terms."""
    total = np.zeros_like(weights)
    for term in terms:
        outer = np.array(term.coef)
        for vector in term.vectors:
            outer = np.multiply.outer(outer, vector)
        total += outer
    return float(np.abs(total - weights).sum())


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
    """Valid correlation as 1-D passes, one per kernel axis and term; scipy's passes if not `gemm`."""
    result = None
    for term in terms:
        part = block
        # The coefficient rides on the first vector, sparing a pass over the block.
        vectors = (term.vectors[0] * term.coef, *term.vectors[1:])
        for axis, vector in zip(axes, vectors, strict=True):
            part = _pass_1d(part, vector, axis, dtype, gemm)
        result = part if result is None else result + part
    return np.asarray(result, dtype=dtype)


def _pass_1d(
    block: np.ndarray, vector: np.ndarray, axis: int, dtype: np.dtype, gemm: bool = True
) -> np.ndarray:
    """One valid 1-D correlation pass along `axis`, a banded matrix product where it can be.

    A GEMM sums in `dtype`, so float32 takes it only up to TAPS_MAX taps;
    past that, scipy sums in float64 (a constant vector as a running sum).
    """
    n = vector.size
    if n == 1:
        return block * dtype.type(vector[0])
    if gemm and (n <= TAPS_MAX or dtype == np.float64):
        return _pass_gemm(block, vector, axis, dtype)
    return _pass_scipy(block, vector, axis, dtype, running_sum=n > TAPS_MAX and _is_constant(vector))


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

# Multiply-adds per matrix product.  OpenBLAS hands a product of about 2**20
# or more to its own threads; on cores that are busy already (dask's threads,
# other jobs) those wait for one another, and a pass took 3-25x longer.
# Smaller products run on the calling thread, which dask parallelises.
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


def _pass_gemm(block: np.ndarray, vector: np.ndarray, axis: int, dtype: np.dtype) -> np.ndarray:
    """Valid correlation along `axis` as a banded matrix product, GEMM_TILE outputs at a time.

    The block is seen as (before, length, after); outputs ``s .. s + w`` of
    every line are its inputs ``s .. s + w + n - 1`` times the band matrix.
    """
    n, length = vector.size, block.shape[axis]
    valid = length - (n - 1)
    before, after = math.prod(block.shape[:axis]), math.prod(block.shape[axis + 1 :])
    lines = np.ascontiguousarray(block, dtype=dtype).reshape(before, length, after)
    out = np.empty((before, valid, after), dtype=dtype)
    band = _band(vector, GEMM_TILE, dtype)
    piece = max(1, _GEMM_SIZE // (GEMM_TILE * (GEMM_TILE + n - 1)))
    if after == 1:
        # The last axis: lines are matrix rows, `piece` at a time, times the band.
        rows, out_rows = lines[:, :, 0], out[:, :, 0]
        for first in range(0, before, piece):
            for start in range(0, valid, GEMM_TILE):
                width = min(GEMM_TILE, valid - start)
                reads = rows[first : first + piece, start : start + width + n - 1]
                target = out_rows[first : first + piece, start : start + width]
                np.matmul(reads, band[: width + n - 1, :width], out=target)
    else:
        # Any other axis: the band, transposed, times every (reads, piece) slab.
        band_t = np.ascontiguousarray(band.T)
        for first in range(0, after, piece):
            for start in range(0, valid, GEMM_TILE):
                width = min(GEMM_TILE, valid - start)
                reads = lines[:, start : start + width + n - 1, first : first + piece]
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
        seconds = 0.0
        for term in terms:
            shape = list(block_shape)
            for axis, vector in zip(axes, term.vectors, strict=True):
                inputs = math.prod(shape)
                shape[axis] -= vector.size - 1
                seconds += _pass_cost(vector, inputs, math.prod(shape))
        costs["separable"] = seconds
    fast = [scipy.fft.next_fast_len(n, real=True) if a in axes else n for a, n in enumerate(block_shape)]
    fast_size = math.prod(fast)
    costs["fft"] = COST_FFT * fast_size * max(1.0, math.log2(max(2, fast_size)))
    return costs


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
    listed = ", ".join(
        f"{name} {seconds * 1e3:.3g} ms" for name, seconds in sorted(costs.items(), key=lambda c: c[1])
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
    # Checking the result rather than the block is exact: both methods use
    # every block value in at least one result value (an FFT in all of them;
    # every separable pass in its valid window, multiplying by zero weights
    # too), and no sum or product turns NaN or infinity finite again.  So a
    # finite result comes from a finite block, and costs one pass over the
    # result, no more than checking the block did.
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
