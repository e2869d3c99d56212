"""CMA-ES over controller parameters (the `cma` package), with a state that resumes.

The search maximises episode return; `cma` minimises, so it is told -return. No weight
penalty is added to the fitness.

The saved state is plain data, never a pickle: a pickled `cma` strategy holds functions
and option strings that `cma` evaluates, so loading one from a stranger could run code.
The state file (.npz, read with allow_pickle=False) records how the search started (x0,
sigma0, each parameter's share of it, population, seed) and the fitnesses told in every
generation. Loading rebuilds the strategy by replaying ask and tell, which `cma` does
deterministically (the search draws from a random stream of its own), and checks the result
against the saved mean and step size. Replaying costs about 27 ms a generation for 867
parameters and population 64 (benchmarks/search_state.py).
"""

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
from worldmodels.search_record import SearchRecord, read_record, record_arrays

STATE_FILE = "cma_state.npz"
_FIX = "delete it or pass --restart"


@dataclass(kw_only=True)
class SearchState(SearchRecord):
    """A CMA-ES search: the strategy, how it started (x0, sigma0, stds, population, seed) and what it was told."""
    es: cma.CMAEvolutionStrategy
    sigma0: float
    seed: int
    stds: np.ndarray | None = None  # float64 [P]: each parameter's step size is sigma0 x its entry (None: all sigma0)
    told: list[np.ndarray] = field(default_factory=list)  # float64 [population] per generation: -fitness

    @property
    def generation(self) -> int:
        return len(self.told)

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.es.mean)

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        """candidates [population, P] as asked, fitness [population] (mean returns)."""
        self._tell(candidates, -np.asarray(fitness, dtype=np.float64))

    def _tell(self, candidates: np.ndarray, told: np.ndarray) -> None:
        """What cma is told (-fitness) goes to cma and into the record a replay repeats."""
        self.es.tell(list(candidates), list(told))
        self.told.append(told)


def _strategy(x0: np.ndarray, sigma0: float, population: int, seed: int, stds: np.ndarray | None) -> cma.CMAEvolutionStrategy:
    # A random stream of the search's own (the numbers cma's own 'seed': seed + 1 would give),
    # so nothing else that draws from numpy's global stream changes the candidates.
    randn = np.random.RandomState(seed + 1).randn
    options = {"popsize": population, "randn": randn, "verbose": -9} | ({} if stds is None else {"CMA_stds": list(stds)})
    return cma.CMAEvolutionStrategy(x0, sigma0, options)


ROUND_OFF = 1e-6  # how far a replayed search may stray from the saved one (relative) and still be the same search


def new_search(dimension: int, sigma0: float, population: int, seed: int, config: dict, x0: np.ndarray | None = None,
               stds: np.ndarray | None = None) -> SearchState:
    """Start at x0 (default 0: a controller that drives straight at half gas), step size sigma0,
    times stds [dimension] per parameter where given (inputs on other scales than the rest)."""
    if population < 3 and dimension >= cma.evolution_strategy.TPA_dimension:
        # cma's two-point step-size rule, used from this many parameters on, places two candidates of every generation
        # itself and fails in generation 2 when they are all there are
        raise DataError(f"a population of {population} is too small for a search over {dimension} parameters (cma adapts the "
                        "step size by two candidates of each generation it places itself); use --population 3 or more")
    x0 = np.zeros(dimension) if x0 is None else np.asarray(x0, dtype=np.float64)
    stds = None if stds is None else np.asarray(stds, dtype=np.float64)
    return SearchState(es=_strategy(x0, sigma0, population, seed, stds), x0=x0, sigma0=sigma0, seed=seed, stds=stds, config=config)


def save_search(path: str | Path, state: SearchState) -> None:
    told = np.array(state.told, dtype=np.float64).reshape(state.generation, state.es.popsize)
    save_npz(path, compress=False, **record_arrays(state, sigma0=state.sigma0, population=state.es.popsize, seed=state.seed,
                                                   cma_version=cma.__version__),
             told=told, mean=np.asarray(state.es.mean), sigma=np.array(state.es.sigma),
             **({} if state.stds is None else {"stds": state.stds}))


def load_search(path: str | Path, config: dict, log_columns: list[str], flags: dict[str, str] | None = None) -> SearchState:
    """A saved search rebuilt by replaying it, or a DataError if the file is unreadable, was
    started with other settings (named by their ``flags``), or does not replay to the state it
    saved (its log rows must have ``log_columns``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            _, told, mean, sigma = data["meta"], data["told"], data["mean"], float(data["sigma"])  # meta first: a pickle stops here
            stds = data["stds"] if "stds" in data.files else None  # states saved before stds: all sigma0
            record, meta = read_record(path, data, config, log_columns, len(told), flags or {}, _FIX, "CMA-ES state")
        sigma0, population, seed = float(meta["sigma0"]), int(meta["population"]), int(meta["seed"])
    except (OSError, ValueError, TypeError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable CMA-ES state ({type(error).__name__}); {_FIX}") from None
    if (told.dtype != np.float64 or told.ndim != 2 or told.shape[1] != population or not np.isfinite(told).all()
            or (stds is not None and (stds.dtype != np.float64 or stds.shape != record["x0"].shape or not (stds > 0).all()))):
        raise DataError(f"{path}: damaged CMA-ES state (its arrays or log do not fit together); {_FIX}")
    try:
        state = SearchState(es=_strategy(record["x0"], sigma0, population, seed, stds), sigma0=sigma0, seed=seed, stds=stds,
                            **record)
        for values in tqdm(told, desc="replaying the search", leave=False, dynamic_ncols=True, disable=len(told) < 100):
            state._tell(state.es.ask(), values)
    except (ValueError, TypeError, IndexError) as error:
        raise DataError(f"{path}: damaged CMA-ES state ({type(error).__name__} while replaying it); {_FIX}") from None
    # a replay on another number of BLAS threads adds in another order: it may differ in round-off
    # (7e-9 after 60 generations of 867 parameters), where a changed fitness moves the mean by far more
    if not (np.allclose(state.es.mean, mean, rtol=0, atol=ROUND_OFF * max(1.0, np.abs(mean).max()))
            and np.isclose(state.es.sigma, sigma, rtol=ROUND_OFF, atol=0)):
        raise DataError(f"{path}: replaying it with cma {cma.__version__} does not give the search it saved (written with cma "
                        f"{meta.get('cma_version')}, or damaged); pass --restart to start a new search")
    return state
