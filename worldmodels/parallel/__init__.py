"""The parallel map: one interface (``WorkerPool``: ``map``, ``share``, ``close``) and two
backends, as stable-baselines3 keeps its vector envs:

- ``local.LocalPool``: this process, or worker processes on this machine (the default);
- ``ray_backend.RayPool``: a Ray cluster (``--ray [ADDRESS]``), imported only when asked.

``make_pool`` picks one from the stages' flags. Tasks get V's and M's weights through
``pool.share`` (a handle, never a path) and return their results to the driver.
"""

from worldmodels.errors import DataError
from worldmodels.parallel.base import TASK_TIMEOUT, Shared, WorkerDied, WorkerPool
from worldmodels.parallel.local import LocalPool, default_workers

__all__ = ["TASK_TIMEOUT", "LocalPool", "Shared", "WorkerDied", "WorkerPool", "default_workers", "make_pool"]


def make_pool(workers: int = 0, ray: str | None = None, task_timeout: float = TASK_TIMEOUT) -> WorkerPool:
    """workers: how many tasks run at once (0: one per core here, or every CPU of the Ray
    cluster); ray: None for the local pool, else the Ray address ("" for Ray's own default:
    RAY_ADDRESS, or a new instance); task_timeout: seconds before a Ray task that still runs
    is stopped and run again."""
    if ray is None:
        return LocalPool(workers or None)
    try:
        from worldmodels.parallel.ray_backend import RayPool
    except ImportError as error:
        raise DataError(f"--ray needs the ray package ({error}); install it with: pip install -e \".[ray]\"") from None
    return RayPool(ray or None, workers or None, task_timeout)
