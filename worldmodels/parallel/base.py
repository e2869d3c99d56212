"""The interface every backend of the parallel map keeps, and what they share.

``pool.map(fn, items)`` returns ``[fn(item) for item in items]`` in order, with a progress
bar when given ``desc``; ``on_result`` (called here, in the driver, as each result arrives)
lets a caller keep what it needs of a large result (stage 01 writes each episode as it
comes) instead of holding them all. ``pool.share(value)`` puts a value the tasks need
(V's and M's weights) where every worker can read it, once; tasks carry the small
``Shared`` handle, never a path, so no backend assumes a shared file system.

What every backend does the same way:
- A worker's exception reaches the caller as itself, with the worker's traceback.
- A worker that dies (killed, out of memory, a crash in native code) ends the map with
  ``WorkerDied`` instead of hanging, after the retries the backend has (the stages stop
  with one line and resume when re-run).
- A first Ctrl-C or SIGTERM (worldmodels/interrupt.py) lets the tasks in progress finish
  (their results still go to ``on_result``), starts no more and raises ``Interrupted``;
  a second one stops the workers at once.
- Each worker runs torch on one thread, so workers share the cores instead of fighting.
"""

import uuid
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, TypeVar

import torch
from tqdm import tqdm

from worldmodels.interrupt import Interrupted, ignore_stop_signals

T = TypeVar("T")
R = TypeVar("R")

RETRIES = 3  # runs of a task after its first when its worker dies or it hangs (backends that can retry: Ray)
TASK_TIMEOUT = 1800.0  # seconds a task may run before it counts as hung (a stage 05 job of 64 episodes takes about a minute)


class WorkerDied(RuntimeError):
    """A worker ended without returning (killed by a signal, out of memory, its node gone,
    or hung past the pool's timeout) more often than the pool retries."""


class Shared(ABC):
    """A small, picklable handle to a value put once where workers can read it.

    ``key`` names the value (a new one per ``share``); a worker reads the value with
    ``get()`` and may keep what it builds from it under that key (``agent_models``)."""

    key: str

    @abstractmethod
    def get(self) -> Any:
        """The value (in a worker or in the driver)."""

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Shared) and other.key == self.key


def new_key() -> str:
    return uuid.uuid4().hex


def task_name(fn: Callable) -> str:
    """What error messages call a map's tasks: the function's name (through a partial)."""
    return getattr(getattr(fn, "func", fn), "__name__", "a task")


def stopped(finished: int, total: int, name: str) -> Interrupted:
    """What the map did before it stopped; the caller says what of it was kept."""
    return Interrupted(f"{finished} of {total} runs of {name} had finished")


def prepare_worker() -> None:
    """What a worker process does before its first task: one torch thread, and the
    driver decides when it stops (it shares the terminal's Ctrl-C with the driver)."""
    torch.set_num_threads(1)
    ignore_stop_signals()


class WorkerPool(ABC):
    """A parallel map over ``workers`` workers; a context manager that closes them."""

    workers: int

    def map(self, fn: Callable[[T], R], items: Iterable[T], desc: str | None = None,
            on_result: Callable[[R], Any] | None = None) -> list:
        """[fn(item) for item in items] (or, with ``on_result``, what it returns for each
        result), in the items' order."""
        items = list(items)
        results = [None] * len(items)
        with tqdm(total=len(items), desc=desc, disable=desc is None, dynamic_ncols=True) as bar:
            def finish(index: int, result: R) -> None:
                results[index] = result if on_result is None else on_result(result)
                bar.update()

            self._run(fn, items, finish)
        return results

    @abstractmethod
    def _run(self, fn: Callable[[T], R], items: list[T], finish: Callable[[int, R], None]) -> None:
        """Run fn on every item, calling finish(index, result) in this process as each ends."""

    @abstractmethod
    def share(self, value: Any) -> Shared:
        """Put ``value`` (tensors and plain values) where every worker can read it."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers and free what ``share`` put."""

    @abstractmethod
    def describe(self) -> str:
        """Where the work runs, for the stages' first line, e.g. "2 worker processes"."""

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
