"""What every search for C keeps beside its optimiser's own state (CMA-ES in
worldmodels/evolution.py, gradient ascent in the dream in worldmodels/dream_gradient.py):
where it started, its log, every check of its current controller and which one is kept, and
how the starting controller was trained. Saved as plain data in the search's .npz file (a JSON
``meta`` entry and a ``check_means`` array), never a pickle."""

import json
from dataclasses import dataclass, field

import numpy as np

from worldmodels.errors import DataError
from worldmodels.logs import log_fits


@dataclass(kw_only=True)
class SearchRecord:
    x0: np.ndarray  # float64 [P], where the search started
    config: dict = field(default_factory=dict)  # what the search was started with (plain values)
    best_score: float = -np.inf  # best check score so far
    best_generation: int = -1
    log: list[dict[str, str]] = field(default_factory=list)  # the rows of controller_log.csv, one per generation
    start_check_steps: int = 0  # real steps of the check of a saved starting controller (in generation 1's row)
    # every check: {"generation", "score" (the search's own world's: dream or real), "real" (None if saved before it was recorded)}
    checks: list[dict] = field(default_factory=list)
    check_means: list[np.ndarray] = field(default_factory=list)  # float64 [P] each: the controller each check scored
    history: list[dict] = field(default_factory=list)  # how the starting controller was trained (checkpoints.training_history)

    @property
    def generation(self) -> int:
        """Generations completed."""
        raise NotImplementedError

    @property
    def mean(self) -> np.ndarray:
        """float64 [P]: the controller the search stands at (CMA-ES's mean; the gradient's current point)."""
        raise NotImplementedError

    def add_check(self, generation: int, score: float, mean: np.ndarray, real: float) -> None:
        self.checks.append({"generation": int(generation), "score": float(score), "real": float(real)})
        self.check_means.append(np.array(mean, dtype=np.float64))


def record_arrays(record: SearchRecord, **meta) -> dict[str, np.ndarray]:
    """The record as .npz entries: ``meta`` (JSON: the record's plain values and the caller's
    ``meta``), ``x0`` and ``check_means``."""
    meta |= {"config": record.config, "best_score": record.best_score, "best_generation": record.best_generation,
             "log": record.log, "start_check_steps": record.start_check_steps, "checks": record.checks,
             "history": record.history}
    check_means = np.array(record.check_means, dtype=np.float64).reshape(len(record.checks), len(record.x0))
    return {"meta": np.array(json.dumps(meta)), "x0": np.asarray(record.x0, dtype=np.float64), "check_means": check_means}


def describe_changes(saved: dict, now: dict, flags: dict[str, str]) -> str:
    """What differs between two search configs, each setting named by its flag where it has one
    (``flags``: config key -> flag), e.g. "--check-episodes 100 then, 20 now"."""
    parts = []
    for key in sorted(now.keys() | saved.keys()):
        if saved.get(key) != now.get(key):
            then = "not recorded" if key not in saved else f"{saved[key]}"
            parts.append(f"{flags.get(key, key)} {then} then, {now.get(key, 'not set')} now")
    return "; ".join(parts)


def read_record(path, data, config: dict, log_columns: list[str], generations: int, flags: dict[str, str], fix: str,
                what: str) -> tuple[dict, dict]:
    """The record's fields (SearchRecord keywords) and the whole meta from an open .npz ``data``
    of ``generations`` generations, or a DataError naming ``path`` when it was started with
    another ``config`` (its settings named by their ``flags``) or does not fit together.
    Reading errors (missing keys, bad JSON) are the caller's to turn into one line."""
    meta = json.loads(str(data["meta"]))
    x0 = data["x0"]
    check_means = data["check_means"] if "check_means" in data else None
    saved_config = meta["config"]
    if saved_config != config:
        changed = describe_changes(saved_config, config, flags) if isinstance(saved_config, dict) else "all"
        raise DataError(f"{path}: started with other settings ({changed}); the search's objective or check tracks would "
                        "change: resume it with its settings, or pass --restart to start a new search")
    if check_means is None or "checks" not in meta:
        raise DataError(f"{path}: saved by an older version of this code, which did not record its checks; {fix}")
    checks = [{"generation": int(c["generation"]), "score": float(c["score"]), "real": None if c.get("real") is None else float(c["real"])}
              for c in meta["checks"]]
    history, log = meta.get("history", []), meta["log"]
    if isinstance(log, list) and all(isinstance(row, dict) and set(log_columns) - set(row) == {"dream_steps"} for row in log):
        log = [row | {"dream_steps": ""} for row in log]  # a log written before dream steps were counted: not known
    if (x0.dtype != np.float64 or x0.ndim != 1 or not np.isfinite(x0).all() or not log_fits(log, log_columns, generations)
            or check_means.shape != (len(checks), len(x0)) or not isinstance(history, list)):
        raise DataError(f"{path}: damaged {what} (its arrays or log do not fit together); {fix}")
    fields = {"x0": x0, "config": saved_config, "best_score": float(meta["best_score"]),
              "best_generation": int(meta["best_generation"]), "log": log,
              "start_check_steps": int(meta.get("start_check_steps", 0)),  # states saved before it was recorded have none
              "checks": checks, "check_means": list(check_means), "history": history}
    return fields, meta
