"""The Ray backend: the same map on a Ray cluster (``--ray [ADDRESS]``); ray is imported
only when a Ray pool is asked for (``pip install -e ".[ray]"``).

- Connecting: ADDRESS "auto" (a cluster started on this machine with ``ray start``),
  "HOST:PORT" (a cluster's head), "local" (a new instance for this run), or none: Ray's own
  convention, the cluster in RAY_ADDRESS if set, else a new instance. A new instance made
  here binds to this machine's loopback address only (127.0.0.1) and stops with the pool.
- Nothing assumes a shared file system: ``share`` puts a value into Ray's object store once
  (tasks carry its reference), and results come back to the driver.
- At most ``workers`` tasks (default: every CPU of the cluster) run at once, the rest wait
  here, so a task's clock starts when it starts.
- Faults: a task whose worker dies, or whose node leaves, is run again on another worker; a
  task still running ``task_timeout`` seconds after it started is stopped and run again.
  Both count against the task's ``retries`` runs after its first, then the map raises
  ``WorkerDied``: the stage stops with one line, and re-running resumes. Runs are restarted
  here rather than by Ray's own ``max_retries``, so every run starts its own clock: the time a
  run lost to a dead worker is not counted against the next.
"""

import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import ray
import torch
from tqdm import tqdm

from worldmodels.interrupt import STOP_SIGNALS, stop_requested
from worldmodels.parallel.base import RETRIES, TASK_TIMEOUT, Shared, WorkerDied, WorkerPool, stopped, task_name

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # makes a new Ray instance bind to 127.0.0.1 only
_WORKER_DIED = object()  # what _result gives for a run whose worker or node died


@dataclass(frozen=True, eq=False)
class RayShared(Shared):
    """A value in Ray's object store."""
    ref: Any = field(repr=False)  # ray.ObjectRef
    key: str = ""

    def get(self) -> Any:
        return ray.get(self.ref)


def _run_task(fn: Callable, item: Any) -> Any:
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)  # Ray sets OMP_NUM_THREADS=1 for a 1-CPU task; torch is told as well
    return fn(item)


def starts_new_instance(address: str | None) -> bool:
    """Whether ray.init(address) starts a new Ray instance rather than joining a cluster."""
    return address == "local" or (not address and not os.environ.get("RAY_ADDRESS"))


class RayPool(WorkerPool):
    def __init__(self, address: str | None = None, workers: int | None = None, task_timeout: float = TASK_TIMEOUT,
                 retries: int = RETRIES):
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            new_instance = starts_new_instance(address)
            if new_instance:  # on loopback: ray reads the variable when imported, so its constant is set too
                os.environ.update(LOOPBACK)
                ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
            handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
            ray.init(address=address or None, num_cpus=workers if new_instance else None, include_dashboard=False,
                     logging_level="WARNING")
            for signum, handler in handlers.items():  # ray.init makes SIGTERM kill the driver: stops stay safe points
                signal.signal(signum, handler)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, workers or cpus)
        self.task_timeout, self.retries = task_timeout, retries
        self._task = ray.remote(num_cpus=1, max_retries=0)(_run_task)  # runs are restarted here, each with its own clock

    def describe(self) -> str:
        nodes = sum(node["Alive"] for node in ray.nodes())
        return f"{self.workers} Ray workers ({nodes} node{'s' if nodes != 1 else ''})"

    def share(self, value: Any) -> Shared:
        ref = ray.put(value)
        return RayShared(ref, ref.hex())

    def _run(self, fn: Callable, items: list, finish: Callable[[int, Any], None]) -> None:
        name = task_name(fn)
        fn_ref = ray.put(fn)  # once per map, not once per task
        waiting, running, runs = deque(range(len(items))), {}, [0] * len(items)
        finished = 0

        def start(i: int) -> None:
            runs[i] += 1
            running[self._task.remote(fn_ref, items[i])] = (i, time.monotonic())

        try:
            while waiting or running:
                while waiting and len(running) < self.workers and not stop_requested():
                    start(waiting.popleft())
                if not running:
                    break  # stopped, with nothing left in progress
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                for ref in ready:
                    i, _ = running.pop(ref)
                    result = self._result(ref, name, runs[i] > self.retries)
                    if result is _WORKER_DIED:
                        tqdm.write(f"{name} on item {i}: its Ray worker died; running it again")
                        start(i)
                        continue
                    finish(i, result)
                    finished += 1
                for ref, (i, started) in list(running.items()):
                    if time.monotonic() - started > self.task_timeout:
                        ray.cancel(ref, force=True)
                        del running[ref]
                        if runs[i] > self.retries:
                            raise WorkerDied(f"{name} on item {i} ran past {self.task_timeout:g} s {runs[i]} times; "
                                             "finished work is saved: re-run to resume (or raise --task-timeout)")
                        tqdm.write(f"{name} on item {i} ran past {self.task_timeout:g} s: running it again")
                        start(i)
        except KeyboardInterrupt:  # a second Ctrl-C: stop the tasks at once
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        except BaseException:
            for ref in running:
                ray.cancel(ref)
            raise
        if finished < len(items):
            raise stopped(finished, len(items), name)

    def _result(self, ref: Any, name: str, last_run: bool) -> Any:
        """The task's result, _WORKER_DIED if its worker or node died (and it may run again),
        or the task's own exception."""
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as error:  # the task raised: re-raise that, with the worker's traceback
            cause = getattr(error, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from error
            raise
        except ray.exceptions.RayError as error:  # its worker or node died
            if not last_run:
                return _WORKER_DIED
            raise WorkerDied(f"a Ray worker died while running {name}, {self.retries + 1} times "
                             f"({type(error).__name__}); finished work is saved: re-run to resume") from None

    def close(self) -> None:
        if self._connected_here and ray.is_initialized():
            ray.shutdown()
            self._connected_here = False
