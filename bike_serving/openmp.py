"""One OpenMP thread per model call inside the server.

HistGradientBoosting predicts with OpenMP threads on every core by default. In a server the
concurrency comes from requests (event loop + worker threads), and per-call OpenMP teams
oversubscribe the cores: on the 2-core bench host (shared), one-row predictions went from ~8 ms
to ~4 ms in a worker thread and a 16,800-row one from ~530 ms to ~160 ms with one thread.
OpenMP thread counts are per calling thread, hence a limit around each call (~12 us) rather than
once at startup. Setting OMP_NUM_THREADS explicitly turns this off (the operator's choice wins).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import cache

from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    # Built lazily: it inspects the libraries loaded by then (sklearn's libgomp is, by first use).
    return ThreadpoolController()


@contextlib.contextmanager
def one_openmp_thread() -> Iterator[None]:
    if "OMP_NUM_THREADS" in os.environ:
        yield
        return
    with _controller().limit(limits=1, user_api="openmp"):
        yield
