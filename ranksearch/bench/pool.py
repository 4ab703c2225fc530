"""The benchmarks' worker pool: spawned processes that end when the benchmark process does."""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor


def _die_with_parent() -> None:
    """Pool initializer: a worker ends when the benchmark process does (Linux), so stopping the
    benchmark never leaves trainings running on their own."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` spawned processes (spawn, not fork: the parent may hold torch's thread pools,
    which a forked child inherits broken)."""
    import multiprocessing

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent)
