"""One BLAS thread inside block products (_blas.py): the same bytes under any BLAS threading (#15)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from convflow.engine._blas import one_blas_thread

REPOSITORY = Path(__file__).resolve().parents[2]

# A Gaussian (sigma 2: 17 taps) on a float32 volume takes the banded-GEMM passes; its last-axis
# products (about 2**19 multiply-adds each) are where OpenBLAS picks its kernel by the threads it
# may use.  The script prints a hash of the bytes and scipy's largest difference.
SCRIPT = """
import hashlib, numpy as np, scipy.ndimage as ndi, dask.array as da, convflow
from convflow import kernels
image = np.random.default_rng(15).random((24, 72, 72), dtype=np.float32) * 1000
lazy = convflow.convolve(da.from_array(image, chunks=(12, 36, 36)), kernels.gaussian(2.0, ndim=3))
result = lazy.compute(scheduler="threads", num_workers={workers})
expected = ndi.gaussian_filter(image.astype(np.float64), 2.0, truncate=4.0)
print(hashlib.sha256(result.tobytes()).hexdigest(), float(np.abs(result - expected).max()))
"""


def blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.mark.slow
def test_blocks_write_the_same_bytes_under_any_blas_and_dask_threading():
    runs = []
    for blas, workers in [("1", 1), ("2", 2), ("4", 1), ("8", 3)]:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": blas, "OMP_NUM_THREADS": blas, "MKL_NUM_THREADS": blas}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), env.get("PYTHONPATH")]))
        command = [sys.executable, "-c", SCRIPT.format(workers=workers)]
        runs.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = []
    for process in runs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outputs.append(out.split())
    assert {digest for digest, _ in outputs} == {outputs[0][0]}, outputs
    assert float(outputs[0][1]) < 1e-3  # float32 sums of values up to 1000: the result is still scipy's


def test_one_blas_thread_limits_every_blas_inside_and_restores_it_after():
    before = blas_threads()
    with one_blas_thread():
        assert set(blas_threads()) == {1}
        with one_blas_thread():  # nested, as passes inside a fused stack may be
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_one_blas_thread_keeps_the_limit_until_the_last_thread_leaves():
    # The first thread leaves while the second is still inside: the second must keep one BLAS thread.
    both_inside, first_left = threading.Barrier(2), threading.Event()
    seen = []

    def first() -> None:
        with one_blas_thread():
            both_inside.wait()
        first_left.set()

    def second() -> None:
        with one_blas_thread():
            both_inside.wait()
            first_left.wait()
            seen.append(set(blas_threads()))

    before = blas_threads()
    workers = [threading.Thread(target=first), threading.Thread(target=second)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen == [{1}]
    assert blas_threads() == before


def test_products_inside_one_blas_thread_match_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.random((300, 40)), rng.random((40, 16))
    with one_blas_thread():
        inside = a @ b
    np.testing.assert_allclose(inside, np.einsum("ij,jk->ik", a, b), rtol=1e-12)
