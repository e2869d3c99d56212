"""CMA-ES over controller parameters (the `cma` package), with a state that resumes.

The search maximises episode return; `cma` minimises, so it is told -return. No weight
penalty is added to the fitness.

The saved state is plain data, never a pickle: a pickled `cma` strategy holds functions
and option strings that `cma` evaluates, so loading one from a stranger could run code.
The state file (.npz, read with allow_pickle=False) records how the search started (x0,
sigma0, population, seed) and the fitnesses told in every generation. Loading rebuilds the
strategy by replaying ask and tell, which `cma` does deterministically (the search draws
from a random stream of its own), and checks the result against the saved mean and step
size. Replaying costs about 27 ms a generation for 867 parameters and population 64
(benchmarks/search_state.py).
"""

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

# cma warns on import that it cannot plot without matplotlib, which is not needed here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Could not import matplotlib")
    import cma

from worldmodels.atomic import save_npz
from worldmodels.errors import DataError
from worldmodels.logs import log_fits

STATE_FILE = "cma_state.npz"
_FIX = "delete it or pass --restart"


@dataclass
class SearchState:
    es: cma.CMAEvolutionStrategy
    x0: np.ndarray  # float64 [P], where the search started
    sigma0: float
    seed: int
    config: dict = field(default_factory=dict)  # what the search was started with (plain values)
    told: list[np.ndarray] = field(default_factory=list)  # float64 [population] per generation: -fitness
    best_score: float = -np.inf  # best check score of the CMA mean so far
    best_generation: int = -1
    log: list[dict[str, str]] = field(default_factory=list)  # the rows of controller_log.csv, one per generation
    start_check_steps: int = 0  # real steps of the check of a saved starting controller (in generation 1's row)
    checks: list[dict] = field(default_factory=list)  # every check of the CMA mean: {"generation", "score"} (what keeping compares)
    check_means: list[np.ndarray] = field(default_factory=list)  # float64 [P] each: the CMA mean each check scored
    history: list[dict] = field(default_factory=list)  # how the starting controller was trained (checkpoints.training_history)

    @property
    def generation(self) -> int:
        """Generations completed."""
        return len(self.told)

    def add_check(self, generation: int, score: float, mean: np.ndarray) -> None:
        self.checks.append({"generation": int(generation), "score": float(score)})
        self.check_means.append(np.array(mean, dtype=np.float64))

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        """candidates [population, P] as asked, fitness [population] (mean returns)."""
        self._tell(candidates, -np.asarray(fitness, dtype=np.float64))

    def _tell(self, candidates: np.ndarray, told: np.ndarray) -> None:
        """What cma is told (-fitness) goes to cma and into the record a replay repeats."""
        self.es.tell(list(candidates), list(told))
        self.told.append(told)


def _strategy(x0: np.ndarray, sigma0: float, population: int, seed: int) -> cma.CMAEvolutionStrategy:
    # A random stream of the search's own (the numbers cma's own 'seed': seed + 1 would give),
    # so nothing else that draws from numpy's global stream changes the candidates.
    randn = np.random.RandomState(seed + 1).randn
    return cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": population, "randn": randn, "verbose": -9})


def new_search(dimension: int, sigma0: float, population: int, seed: int, config: dict, x0: np.ndarray | None = None) -> SearchState:
    """Start at x0 (default 0: a controller that drives straight at half gas), step size sigma0."""
    if population < 3 and dimension >= cma.evolution_strategy.TPA_dimension:
        # cma's two-point step-size rule, used from this many parameters on, places two candidates of every generation
        # itself and fails in generation 2 when they are all there are
        raise DataError(f"a population of {population} is too small for a search over {dimension} parameters (cma adapts the "
                        "step size by two candidates of each generation it places itself); use --population 3 or more")
    x0 = np.zeros(dimension) if x0 is None else np.asarray(x0, dtype=np.float64)
    return SearchState(_strategy(x0, sigma0, population, seed), x0, sigma0, seed, config)


def save_search(path: str | Path, state: SearchState) -> None:
    meta = {"config": state.config, "sigma0": state.sigma0, "population": state.es.popsize, "seed": state.seed,
            "best_score": state.best_score, "best_generation": state.best_generation, "log": state.log,
            "start_check_steps": state.start_check_steps, "checks": state.checks, "history": state.history,
            "cma_version": cma.__version__}
    told = np.array(state.told, dtype=np.float64).reshape(state.generation, state.es.popsize)
    check_means = np.array(state.check_means, dtype=np.float64).reshape(len(state.checks), len(state.x0))
    save_npz(path, compress=False, meta=np.array(json.dumps(meta)), x0=state.x0, told=told, mean=np.asarray(state.es.mean),
             sigma=np.array(state.es.sigma), check_means=check_means)


def describe_changes(saved: dict, now: dict, flags: dict[str, str]) -> str:
    """What differs between two search configs, each setting named by its flag where it has one
    (``flags``: config key -> flag), e.g. "--check-episodes 100 then, 20 now"."""
    parts = []
    for key in sorted(now.keys() | saved.keys()):
        if saved.get(key) != now.get(key):
            then = "not recorded" if key not in saved else f"{saved[key]}"
            parts.append(f"{flags.get(key, key)} {then} then, {now.get(key, 'not set')} now")
    return "; ".join(parts)


def load_search(path: str | Path, config: dict, log_columns: list[str], flags: dict[str, str] | None = None) -> SearchState:
    """A saved search rebuilt by replaying it, or a DataError if the file is unreadable, was
    started with other settings (named by their ``flags``), or does not replay to the state it
    saved (its log rows must have ``log_columns``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("meta", "x0", "told", "mean", "sigma")}
            check_means = data["check_means"] if "check_means" in data else None
        meta = json.loads(str(arrays["meta"]))
        sigma0, population, seed = float(meta["sigma0"]), int(meta["population"]), int(meta["seed"])
        saved_config, best_score, best_generation, log = meta["config"], float(meta["best_score"]), int(meta["best_generation"]), meta["log"]
        start_check_steps = int(meta.get("start_check_steps", 0))  # states saved before it was recorded have none
        checks = [{"generation": int(c["generation"]), "score": float(c["score"])} for c in meta.get("checks", [])]
        history = meta.get("history", [])
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable CMA-ES state ({type(error).__name__}); {_FIX}") from None
    if saved_config != config:
        changed = describe_changes(saved_config, config, flags or {}) if isinstance(saved_config, dict) else "all"
        raise DataError(f"{path}: started with other settings ({changed}); the search's objective or check tracks would "
                        "change: resume it with its settings, or pass --restart to start a new search")
    x0, told = arrays["x0"], arrays["told"]
    if check_means is None or "checks" not in meta:
        raise DataError(f"{path}: saved by an older version of this code, which did not record its checks; {_FIX}")
    if (x0.dtype != np.float64 or x0.ndim != 1 or told.dtype != np.float64 or told.ndim != 2 or told.shape[1] != population
            or not (np.isfinite(x0).all() and np.isfinite(told).all()) or not log_fits(log, log_columns, len(told))
            or check_means.shape != (len(checks), len(x0)) or not isinstance(history, list)):
        raise DataError(f"{path}: damaged CMA-ES state (its arrays or log do not fit together); {_FIX}")
    try:
        state = SearchState(_strategy(x0, sigma0, population, seed), x0, sigma0, seed, saved_config,
                            best_score=best_score, best_generation=best_generation, log=log, start_check_steps=start_check_steps,
                            checks=checks, check_means=list(check_means), history=history)
        for values in tqdm(told, desc="replaying the search", leave=False, dynamic_ncols=True, disable=len(told) < 100):
            state._tell(state.es.ask(), values)
    except (ValueError, TypeError, IndexError) as error:
        raise DataError(f"{path}: damaged CMA-ES state ({type(error).__name__} while replaying it); {_FIX}") from None
    if not (np.array_equal(state.es.mean, arrays["mean"]) and state.es.sigma == float(arrays["sigma"])):
        raise DataError(f"{path}: replaying it with cma {cma.__version__} does not give the search it saved (written with cma "
                        f"{meta.get('cma_version')}, or damaged); pass --restart to start a new search")
    return state
