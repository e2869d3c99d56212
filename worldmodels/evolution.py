"""CMA-ES over controller parameters (the `cma` package), with a state that resumes.

The search maximises episode return; `cma` minimises, so it is told -return. No weight
penalty is added to the fitness.
"""

import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# cma warns on import that it cannot plot without matplotlib, which is not needed here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Could not import matplotlib")
    import cma

from worldmodels.atomic import save_pickle
from worldmodels.episodes import DataError


@dataclass
class SearchState:
    es: cma.CMAEvolutionStrategy
    generation: int = 0  # generations completed
    best_score: float = -np.inf  # best check score of the CMA mean so far
    best_generation: int = -1
    config: dict = field(default_factory=dict)  # what the search was started with


def new_search(dimension: int, sigma0: float, population: int, seed: int, config: dict, x0: np.ndarray | None = None) -> SearchState:
    """Start at x0 (default 0: a controller that drives straight at half gas), step size sigma0."""
    x0 = np.zeros(dimension) if x0 is None else np.asarray(x0, dtype=np.float64)
    es = cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": population, "seed": seed + 1, "verbose": -9})
    return SearchState(es=es, config=config)


def save_search(path: str | Path, state: SearchState) -> None:
    save_pickle(path, state)


def load_search(path: str | Path, config: dict) -> SearchState:
    """A saved search, or a DataError if it is unreadable or was started with other settings."""
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as error:  # unpickling raises many types for a damaged file
        raise DataError(f"{path}: unreadable CMA-ES state ({type(error).__name__}); delete it or pass --restart") from None
    if not isinstance(state, SearchState):
        raise DataError(f"{path}: not a CMA-ES state; delete it or pass --restart")
    if state.config != config:
        changed = sorted(k for k in config if state.config.get(k) != config[k])
        raise DataError(f"{path}: started with other settings ({', '.join(changed)}); pass --restart to start a new search")
    return state
