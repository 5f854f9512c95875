"""Ctrl-C (SIGINT) and SIGTERM around a run: they stop it, and never cut a store write in half.

A run's block is wrapped in :func:`interrupts_stop_the_run`, every store write in :func:`interrupts_deferred`.
:data:`interrupted_by` keeps the last signal that interrupted a run in this process (the CLI exits with 128 + it).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

#: Signals received while :func:`interrupts_stop_the_run` is active and not yet accounted for by a run's end.
_pending_signals: list[int] = []
#: The last signal that interrupted a run in this process (the CLI exits with 128 + it).
interrupted_by: int | None = None


def _remember_and_interrupt(signum: int, frame: Any) -> None:
    global interrupted_by
    _pending_signals.append(signum)
    interrupted_by = signum
    raise KeyboardInterrupt(f"signal {signum}")


def take_pending_signal() -> int | None:
    """The first signal received and not yet acted on (and forget them all), or ``None``."""
    first = _pending_signals[0] if _pending_signals else None
    _pending_signals.clear()
    return first


def _raise_if_interrupted() -> None:
    signum = take_pending_signal()
    if signum is not None:
        raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _signals_handled_by(handler: Any) -> Iterator[bool]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM call ``handler``; the previous handlers come back after.
    Yields whether it took effect: signals can only be handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield True
    finally:
        for sig, earlier in previous.items():
            signal.signal(sig, earlier if earlier is not None else signal.SIG_DFL)


@contextmanager
def interrupts_stop_the_run() -> Iterator[None]:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM raise ``KeyboardInterrupt`` and are remembered.

    Python ignores an exception raised inside a garbage-collection callback or ``__del__`` (it prints
    "Exception ignored in ..." and goes on), so a Ctrl-C that lands there would be lost and the run would go on
    to end FINISHED. Remembering the signal lets the next store write (every metric, every epoch) and the
    run's end raise it again, so the run still stops and ends KILLED. Outside the main thread it does nothing.
    """
    try:
        with _signals_handled_by(_remember_and_interrupt):
            yield
    finally:
        _pending_signals.clear()


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs, and deliver them when it ends.

    A ``KeyboardInterrupt`` raised inside an SQLite write leaves the store locked for the rest of the process,
    so the run could no longer be ended KILLED. Every store write of tlrun runs inside this block; the
    signal still takes effect, right after the write, as does one received earlier whose ``KeyboardInterrupt``
    Python swallowed (see :func:`interrupts_stop_the_run`). Outside the main thread it does nothing.
    """
    received: list[int] = []
    try:
        with _signals_handled_by(lambda signum, frame: received.append(signum)) as handled:
            yield
    finally:
        if received:
            signal.raise_signal(received[0])
    if handled:
        _raise_if_interrupted()
