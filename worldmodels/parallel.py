"""One small map-style interface for all parallel work.

``WorkerPool(workers).map(fn, items)`` returns ``[fn(item) for item in items]`` in order.
With one worker it runs in this process; with more it uses processes started with
'spawn' (a forked child of a process that has run multithreaded torch can hang), each
limited to one torch thread so the workers share the cores instead of fighting over them.
A worker's exception reaches the caller with its traceback; a worker that dies (killed,
out of memory, a crash in native code) makes the map raise ``WorkerDied`` instead of
hanging: the stages stop with one line and resume when re-run. A first Ctrl-C or SIGTERM
(worldmodels/interrupt.py) lets the tasks in progress finish, starts no more and raises
``Interrupted`` (the caller says what was kept); a second one kills the workers at once.
"""

import multiprocessing
import os
import pickle
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, TypeVar

import torch
from tqdm import tqdm

from worldmodels.interrupt import Interrupted, ignore_stop_signals, stop_requested

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(RuntimeError):
    """A worker process ended without returning (killed by a signal, out of memory, ...)."""


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def _init_worker() -> None:
    torch.set_num_threads(1)
    ignore_stop_signals()


def _stopped(finished: int, total: int, name: str) -> Interrupted:
    """What the map did before it stopped; the caller says what of it was kept."""
    return Interrupted(f"{finished} of {total} runs of {name} had finished")


class WorkerPool:
    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())
        self._executor = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
            )

    def map(self, fn: Callable[[T], R], items: Iterable[T], desc: str | None = None) -> list[R]:
        """Apply ``fn`` to every item; a progress bar shows when ``desc`` is given."""
        items = list(items)
        name = getattr(getattr(fn, "func", fn), "__name__", "a task")
        results = [None] * len(items)
        bar = tqdm(total=len(items), desc=desc, disable=desc is None, dynamic_ncols=True)
        with bar:
            if self._executor is None:
                for i, item in enumerate(items):
                    results[i] = fn(item)
                    bar.update()
                    if stop_requested() and i + 1 < len(items):
                        raise _stopped(i + 1, len(items), name)
                return results
            pickle.dumps(fn)  # fail here, clearly, rather than in the executor's feeder thread
            futures = {self._executor.submit(fn, item): i for i, item in enumerate(items)}
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[futures[future]] = future.result()
                        bar.update()
                    if stop_requested() and pending:
                        for future in pending:
                            future.cancel()
                        wait(pending)  # the tasks in progress finish (and write what they write)
                        raise _stopped(sum(f.done() and not f.cancelled() for f in futures), len(items), name)
            except BrokenProcessPool:
                self.close()
                raise WorkerDied(f"a worker process died while running {name} (killed, or out of "
                                 "memory?); finished work is saved: re-run to resume") from None
            except KeyboardInterrupt:
                self._terminate()
                raise
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            return results

    def _terminate(self) -> None:
        """Stop the workers mid-task (a second Ctrl-C; they ignore SIGTERM, hence SIGKILL).
        ProcessPoolExecutor has no public way to do this before Python 3.14, hence its
        private process table."""
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.kill()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
