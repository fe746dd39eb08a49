"""Measure the cost-model constants of convflow/engine/_methods.py on this machine.

``method='auto'`` picks direct, separable or FFT block math from a cost model
whose constants are the ``COST_*`` names of ``convflow/engine/_methods.py`` (direct
tap sums and scipy.ndimage.correlate, banded-GEMM 1-D passes, correlate1d and
running-sum passes for float32 vectors past TAPS_MAX taps, fftconvolve).
This script times the engine's own block function
(``_methods.correlate_block``) on float32 cubes of padded-block sizes, one
thread, best of a few repeats (the GEMM passes keep every matrix product
small enough that OpenBLAS runs it on the calling thread, so no thread
setting is needed); reads what each constant multiplies from the
model itself (``_methods.estimate_costs`` with that constant set to 1 and
the rest to 0); fits all constants by least squares on the relative error;
and prints the constants block to paste into ``convflow/engine/_methods.py``.

With ``--check`` (the default) it then times every method on the padded blocks
of the benchmark workloads and says whether the calibrated ``auto`` picks the
fastest one.

    python benchmarks/calibrate.py
    python benchmarks/calibrate.py --edges 66 100 --repeats 2 --no-check   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy

from convflow.engine import _methods

DTYPE = np.dtype(np.float32)
DIRECT_SIZES = (3, 4, 5, 7)  # dense n^3 kernels: tap sums (<= TAPS_MAX weights) and scipy's correlate
BAND_TAPS = (3, 9, 17, 33, 64)  # 1-D vectors of the GEMM passes: COST_GEMM and COST_BAND
# Past TAPS_MAX a float32 pass is scipy's, a correlate1d (symmetric vector) or
# a running sum (box), which tell COST_LINE and COST_PASS apart; timed on
# blocks at least twice as long as the vector.
LONG_TAPS = _methods.TAPS_MAX + 1
FFT_SIZES = (3, 9, 17)  # dense n^3 kernels for COST_FFT
# Padded blocks (a chunk plus its halo): 64 + 2, 96 + 4, 128 + 2, 128 + 8, 128 + 16.
# Exact powers of two are left out on purpose: a 128^3 float32 block's 64 KiB
# plane stride aliases in the cache and makes 1-D passes along axis 0 twice as
# slow as at 130^3, which no engine block (always chunk + halo) sees.
EDGES = (66, 100, 130, 136, 144)
SKIP_SECONDS = 4.0  # --check skips a method predicted slower than this per block


def best_time(repeats: int, func: Callable[..., object], *args: object) -> float:
    """Best wall time of `repeats` calls of ``func(*args)``: the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - start)
    return min(times)


@contextlib.contextmanager
def constants(**values: float) -> Iterator[None]:
    """Set `_methods.COST_*` for a moment, so the model's own formula yields its features."""
    saved = {name: getattr(_methods, name) for name in values}
    try:
        for name, value in values.items():
            setattr(_methods, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(_methods, name, value)


def cost_names() -> list[str]:
    """The cost constants `_methods` defines, in the order it defines them."""
    return [name for name in vars(_methods) if name.startswith("COST_")]


def features(
    method: str,
    weights: np.ndarray,
    terms: tuple[_methods.Term, ...] | None,
    shape: tuple[int, ...],
    axes: tuple[int, ...],
) -> dict[str, float]:
    """What `method`'s modelled cost multiplies each constant by, for one block (zeros left out).

    Read from `_methods.estimate_costs` itself, with that constant set to 1
    and the others to 0, so the fit follows whatever formula the engine uses.
    """
    zero = dict.fromkeys(cost_names(), 0.0)
    result = {}
    for name in zero:
        with constants(**{**zero, name: 1.0}):
            multiplier = _methods.estimate_costs(weights, terms, shape, axes).get(method, 0.0)
        if multiplier:
            result[name] = multiplier
    return result


def fit_through_origin(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least-squares constants c minimising the relative error of t ~ x @ c (no intercept)."""
    scaled = x / t[:, None]
    coef, *_ = np.linalg.lstsq(scaled, np.ones_like(t), rcond=None)
    return coef


def dense(size: int, ndim: int, rng: np.random.Generator) -> np.ndarray:
    """A dense random kernel with no zero weight."""
    return rng.uniform(0.1, 1.0, (size,) * ndim)


def symmetric(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random symmetric 1-D vector: what Gaussian, box, Sobel-smoothing passes look like.

    scipy's correlate1d folds a symmetric (or antisymmetric) vector and does
    half the multiplications, so general vectors cost more per tap than this.
    """
    half = rng.uniform(0.1, 1.0, size)
    return half + half[::-1]


def cases(edges: list[int], rng: np.random.Generator) -> list[tuple[str, str, np.ndarray, Any, int]]:
    """(label, method, weights, terms, edge) of every timed block."""
    result = []
    for edge in edges:
        for n in DIRECT_SIZES:
            result.append((f"{n}^3 dense", "direct", dense(n, 3, rng), None, edge))
        lines = [(f"{n}-tap symmetric", symmetric(n, rng)) for n in BAND_TAPS]
        if edge >= 2 * LONG_TAPS:
            lines += [(f"{LONG_TAPS}-tap symmetric", symmetric(LONG_TAPS, rng))]
            lines += [(f"{LONG_TAPS}-tap box", np.full(LONG_TAPS, 1.0 / LONG_TAPS))]
        for label, vector in lines:
            vectors = (vector,) * 3
            weights = np.einsum("i,j,k->ijk", *vectors)
            result.append((label, "separable", weights, (_methods.Term(1.0, vectors),), edge))
        for n in FFT_SIZES:
            result.append((f"{n}^3 dense", "fft", dense(n, 3, rng), None, edge))
    return result


def calibrate(edges: list[int], repeats: int, rng: np.random.Generator) -> dict[str, float]:
    """Time each method on cubes of `edges` with the engine's block function; fit the constants."""
    axes = (0, 1, 2)
    names = cost_names()
    rows, times, methods = [], [], []
    blocks = {edge: rng.random((edge,) * 3, dtype=np.float32) for edge in edges}
    for label, method, weights, terms, edge in cases(edges, rng):
        seconds = best_time(
            repeats, _methods.correlate_block, blocks[edge], weights, terms, axes, method, DTYPE
        )
        found = features(method, weights, terms, (edge,) * 3, axes)
        rows.append([found.get(name, 0.0) for name in names])
        times.append(seconds)
        methods.append(method)
        used = ", ".join(f"{name} x {value:.3g}" for name, value in found.items())
        print(f"  {method:<9} {edge:>3}^3 {label:<16} {seconds * 1e3:8.1f} ms   (model: {used})")
    x, t = np.array(rows), np.array(times)
    fitted_columns = [i for i in range(len(names)) if x[:, i].any()]
    coef = fit_through_origin(x[:, fitted_columns], t)
    fitted = {names[i]: float(c) for i, c in zip(fitted_columns, coef, strict=True)}
    error = (x[:, fitted_columns] @ coef - t) / t
    for method in dict.fromkeys(methods):
        mine = error[[m == method for m in methods]]
        spread = f"{mine.min():+.0%} .. {mine.max():+.0%}"
        print(f"  fit {method:<9}: relative error of the model over {mine.size} blocks: {spread}")
    return fitted


def check_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, tuple[int, ...], tuple[int, ...]]]:
    """The benchmark workloads' kernels on their padded blocks: (label, weights, block shape, axes)."""
    radius = int(4.0 * 2.0 + 0.5)
    x = np.arange(-radius, radius + 1)
    gauss = np.exp(-0.5 * (x / 2.0) ** 2)
    gauss /= gauss.sum()
    sobel = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0])
    return [
        ("W1 gaussian s=2 (17^3)", np.einsum("i,j,k->ijk", gauss, gauss, gauss), (144,) * 3, (0, 1, 2)),
        ("W2 dense 3^3", dense(3, 3, rng), (130,) * 3, (0, 1, 2)),
        ("W3 dense 9^3", dense(9, 3, rng), (136,) * 3, (0, 1, 2)),
        ("W4 box 9^3", np.full((9, 9, 9), 1 / 729), (136,) * 3, (0, 1, 2)),
        ("W5 sobel 3x3", sobel, (8, 2050, 2050), (1, 2)),
    ]


def check(repeats: int, rng: np.random.Generator) -> None:
    """Time every method on the workloads' blocks and compare with the model's choice."""
    print("\nmethod choice on the benchmark blocks (calibrated model vs measured, one thread):")
    for label, weights, shape, axes in check_cases(rng):
        block = rng.random(shape, dtype=np.float32)
        terms = _methods.separable_terms(weights)
        predicted = _methods.estimate_costs(weights, terms, shape, axes)
        chosen, _ = _methods.choose_method("auto", weights, terms, shape, axes)
        measured = {}
        for method, seconds in predicted.items():
            if seconds > SKIP_SECONDS:
                continue
            measured[method] = best_time(
                repeats, _methods.correlate_block, block, weights, terms, axes, method, DTYPE
            )
        fastest = min(measured, key=measured.__getitem__)
        listed = ", ".join(
            f"{m} {predicted[m] * 1e3:.0f}/{measured[m] * 1e3:.0f}"
            if m in measured
            else f"{m} {predicted[m] * 1e3:.0f}/-"
            for m in predicted
        )
        verdict = "ok" if chosen == fastest else f"MISS (fastest is {fastest})"
        print(f"  {label:<24} block {shape}: predicted/measured ms: {listed}; auto -> {chosen}: {verdict}")


def constants_block(fitted: dict[str, float]) -> str:
    """The constants as in convflow/engine/_methods.py, to 3 digits (an unfitted one keeps its value)."""
    return "\n".join(
        f"{name} = {fitted.get(name, getattr(_methods, name)) * 1e9:.3g}e-9" for name in cost_names()
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, calibrate, print the constants block, optionally check the choices."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--edges",
        type=int,
        nargs="+",
        default=list(EDGES),
        help="cube edges of the timed blocks (default %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings per block; the best counts (default 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of blocks and kernels (default 0)")
    parser.add_argument(
        "--check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the workloads' blocks afterwards",
    )
    args = parser.parse_args(argv)
    if os.environ.get("OMP_NUM_THREADS") not in (None, "1"):
        print("note: the model is per thread; scipy.ndimage and scipy.fft run single-threaded here anyway")
    rng = np.random.default_rng(args.seed)
    print(f"timing float32 blocks {args.edges} (one thread, best of {args.repeats}):")
    fitted = calibrate(args.edges, args.repeats, rng)
    print(
        f"\n# measured {datetime.date.today()} on {platform.node() or 'this machine'} "
        f"({platform.processor() or platform.machine()}, numpy {np.__version__}, scipy {scipy.__version__})"
    )
    print(constants_block(fitted))
    if args.check:
        with constants(**fitted):
            check(args.repeats, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
