"""The local backend: this process (one worker) or worker processes on this machine.

Processes are started with 'spawn' (a forked child of a process that has run multithreaded
torch can hang). A value shared with them is written once to the pool's own temporary
folder and read back with ``torch.load(weights_only=True)``; the folder goes when the pool
closes. A dead worker cannot be told from a crash of the whole pool here, so the map stops
with ``WorkerDied`` at once (the Ray backend retries instead).
"""

import multiprocessing
import os
import pickle
import shutil
import tempfile
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from worldmodels.atomic import save_torch
from worldmodels.interrupt import stop_requested, stop_signals_ignored
from worldmodels.parallel.base import Shared, WorkerDied, WorkerPool, new_key, prepare_worker, stopped, task_name


def default_workers() -> int:
    """One worker per core this process may run on."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True, eq=False)
class InProcessShared(Shared):
    """The value itself, for tasks run in the driver."""
    value: Any = field(repr=False)
    key: str = field(default_factory=new_key)

    def get(self) -> Any:
        return self.value


@dataclass(frozen=True, eq=False)
class FileShared(Shared):
    """A value in the pool's temporary folder on this machine, read with weights_only."""
    path: str
    key: str = field(default_factory=new_key)

    def get(self) -> Any:
        return torch.load(self.path, map_location="cpu", weights_only=True)


class LocalPool(WorkerPool):
    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())
        self._executor = None
        self._shared_dir: str | None = None
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=prepare_worker
            )

    def describe(self) -> str:
        return "1 worker (this process)" if self._executor is None else f"{self.workers} worker processes"

    def share(self, value: Any) -> Shared:
        if self._executor is None:
            return InProcessShared(value)
        if self._shared_dir is None:
            self._shared_dir = tempfile.mkdtemp(prefix="worldmodels-shared-")
        key = new_key()
        handle = FileShared(os.path.join(self._shared_dir, f"{key}.pt"), key)
        save_torch(handle.path, value)
        return handle

    def _run(self, fn: Callable, items: list, finish: Callable[[int, Any], None]) -> None:
        name = task_name(fn)
        if self._executor is None:
            for i, item in enumerate(items):
                finish(i, fn(item))
                if stop_requested() and i + 1 < len(items):
                    raise stopped(i + 1, len(items), name)
            return
        pickle.dumps(fn)  # fail here, clearly, rather than in the executor's feeder thread
        with stop_signals_ignored():  # the executor starts its workers in submit: born ignoring the terminal's Ctrl-C
            futures = {self._executor.submit(fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(futures[future], future.result())
                if stop_requested() and pending:
                    for future in pending:
                        future.cancel()
                    done, pending = wait(pending)  # the tasks in progress finish (and their results are kept)
                    for future in done:
                        if not future.cancelled():
                            finish(futures[future], future.result())
                    if any(future.cancelled() for future in done):
                        raise stopped(sum(f.done() and not f.cancelled() for f in futures), len(items), name)
                    # every task had started and has now finished: the map is complete, nothing is lost
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

    def _terminate(self) -> None:
        """Stop the workers mid-task (a second Ctrl-C; they ignore SIGTERM, hence SIGKILL).
        ProcessPoolExecutor has no public way to do this before Python 3.14, hence its
        private process table."""
        for process in list(getattr(self._executor, "_processes", {}).values()):
            process.kill()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._remove_shared()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(cancel_futures=True)
            self._executor = None
        self._remove_shared()

    def _remove_shared(self) -> None:
        if self._shared_dir is not None:
            shutil.rmtree(self._shared_dir, ignore_errors=True)
            self._shared_dir = None
