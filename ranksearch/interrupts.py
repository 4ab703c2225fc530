"""Stopping a search from outside: SIGTERM (a batch scheduler's, Kubernetes' or `kill`'s stop)
is handled like Ctrl-C, so the search ends in the state `ranksearch resume` continues."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While a search runs, SIGTERM (a scheduler's or `kill`'s stop) is handled like Ctrl-C:
    trials stop, the state is saved and the MLflow run is closed, so `resume` continues it.
    Only in the main thread; the previous handler comes back afterwards. The driver enters it
    again after starting Ray, whose own handler would otherwise abort the process."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def to_sigint(signum: int, frame: object) -> None:
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, to_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
