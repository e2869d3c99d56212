"""Ctrl-C as a request to stop at the next safe point.

While a stage runs under ``run_stage``, the first Ctrl-C only sets a flag. Training loops
look at it after each batch or generation, save their state and raise ``Interrupted``;
``WorkerPool.map`` lets the episodes in progress finish (each one's file is written) and
starts no more. A second Ctrl-C stops at once; the last saved state is kept either way.
Worker processes ignore Ctrl-C: their parent decides when they stop.
"""

import signal
import sys
from contextlib import contextmanager
from typing import Iterator


class Interrupted(Exception):
    """The user asked the run to stop; the message says what was saved."""


_requested = False


def _on_ctrl_c(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True
    print("\nCtrl-C: stopping at the next safe point and saving (press it again to stop at once)", file=sys.stderr, flush=True)


@contextmanager
def stop_at_safe_points() -> Iterator[None]:
    """Within this block the first Ctrl-C sets the stop request instead of raising."""
    global _requested
    _requested = False
    previous = signal.signal(signal.SIGINT, _on_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def stop_requested() -> bool:
    return _requested


def ignore_ctrl_c() -> None:
    """For worker processes, which share the terminal's Ctrl-C with their parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
