"""Ctrl-C and SIGTERM as a request to stop at the next safe point.

While a stage runs under ``run_stage``, the first Ctrl-C (SIGINT) or SIGTERM (what
``timeout``, ``docker stop`` and cluster schedulers send) only sets a flag. Training loops
look at it after each batch or generation, save their state and raise ``Interrupted``;
``WorkerPool.map`` lets the episodes in progress finish (each one's file is written) and
starts no more. A second signal stops at once; the last saved state is kept either way.
Worker processes ignore both signals: their parent decides when they stop.
"""

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The user asked the run to stop; the message says what was saved."""


_requested = 0  # the signal that asked to stop, 0 if none


def _signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _on_stop_signal(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = signum
    print(f"\n{_signal_name(signum)}: stopping at the next safe point and saving (send it again to stop at once)",
          file=sys.stderr, flush=True)


@contextmanager
def stop_at_safe_points() -> Iterator[None]:
    """Within this block the first Ctrl-C or SIGTERM sets the stop request instead of raising."""
    global _requested
    _requested = 0
    previous = {signum: signal.signal(signum, _on_stop_signal) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested = 0


def stop_requested() -> bool:
    return bool(_requested)


def stopped_exit_status() -> int:
    """The shell's status for a run ended by the signal that stopped it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + (_requested or signal.SIGINT)


def ignore_stop_signals() -> None:
    """For worker processes, which share the terminal's Ctrl-C (and a process group's
    SIGTERM) with their parent."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored within the block (in the main thread; elsewhere signals
    cannot be set and nothing changes). Processes started in it are born ignoring them: an
    ignored signal stays ignored across exec, and Python then installs no KeyboardInterrupt
    handler, so a worker still importing is not broken by the Ctrl-C meant for its parent.
    A signal that arrives within the block is lost; keep it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
