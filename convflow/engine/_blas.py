"""One BLAS thread while a block's matrix products run, so their float sums never depend on threading.

A BLAS may pick its code path by how many threads it may use: OpenBLAS, for
one, sends a mid-sized float32 product on AVX-512 machines to another
kernel once a second thread is free (``sgemm_direct_performant``), and that
kernel adds the same terms in another order.  A threaded run (OpenBLAS on
every core) and a distributed one (distributed starts its workers with
``OPENBLAS_NUM_THREADS=1``) then wrote different bytes for one config (#15).
Inside `one_blas_thread` the BLAS runs one thread for the calling thread:
the products of one block run where the block runs, whichever scheduler and
however many dask threads, processes or workers, which is also how dask
parallelises them.

Most BLAS builds (OpenBLAS on pthreads, MKL) keep one process-wide limit:
it is counted, so the first block to enter sets it, the last to leave
restores what was there, and no block runs its products under another.
Builds on OpenMP keep a limit per thread: each thread sets and restores its own.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.Lock()
_SHARED: dict[str, Any] = {"inside": 0, "libraries": None, "saved": []}
_PER_THREAD = threading.local()


def _libraries() -> tuple[list[Any], list[Any]]:
    """The loaded BLAS libraries' controllers: (process-wide limit, per-thread limit)."""
    if _SHARED["libraries"] is None:
        from threadpoolctl import ThreadpoolController  # finding the libraries is slow: once

        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        per_thread = [lib for lib in libraries if getattr(lib, "threading_layer", None) == "openmp"]
        shared = [lib for lib in libraries if lib not in per_thread]
        _SHARED["libraries"] = (shared, per_thread)
    return _SHARED["libraries"]


def _set_shared(library: Any, threads: int) -> None:
    """Set a process-wide limit from whichever thread holds the lock.

    threadpoolctl lets only one thread (the first to set a limit) change a
    process-wide OpenBLAS; `_LOCK` serialises every change made here, so
    this thread takes that role for the call.
    """
    release = getattr(type(library), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    library.set_num_threads(threads)
    if release is not None:
        release(force=True)


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the block inside with one BLAS thread; nestable, and safe from many threads at once.

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float(np.ones((2, 3)) @ np.ones(3) @ np.ones(2))
    6.0
    """
    with _LOCK:
        shared, per_thread = _libraries()
        if _SHARED["inside"] == 0:
            _SHARED["saved"] = [lib.get_num_threads() for lib in shared]
            for lib in shared:
                _set_shared(lib, 1)
        _SHARED["inside"] += 1
    depth = getattr(_PER_THREAD, "depth", 0)
    if depth == 0 and per_thread:
        _PER_THREAD.saved = [lib.get_num_threads() for lib in per_thread]
        for lib in per_thread:
            lib.set_num_threads(1)
    _PER_THREAD.depth = depth + 1
    try:
        yield
    finally:
        _PER_THREAD.depth = depth
        if depth == 0 and per_thread:
            for lib, threads in zip(per_thread, _PER_THREAD.saved, strict=True):
                lib.set_num_threads(threads)
        with _LOCK:
            _SHARED["inside"] -= 1
            if _SHARED["inside"] == 0:
                for lib, threads in zip(shared, _SHARED["saved"], strict=True):
                    _set_shared(lib, threads)
