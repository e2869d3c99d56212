"""What a batch of episodes gives back, real (worldmodels/rollout.py) or dreamed
(worldmodels/dream.py). Dependency-free beyond numpy, so the dream needs no real env."""

from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeResults:
    returns: np.ndarray  # float64 [B], summed reward of each episode
    steps: np.ndarray  # int64 [B], steps each episode ran
    # float64 [B], real episodes only: the summed rewards M's reward head predicted along them,
    # what a dream would have paid for the same steps
    predicted_returns: np.ndarray | None = None
    # float64 [B], real episodes only: M's surprise summed along them (Agent.surprise)
    surprise: np.ndarray | None = None
    # real episodes, when asked for: float32 [steps[i], 3] per episode, the actions taken (replayed for the GIFs)
    actions: list[np.ndarray] | None = None
    # bool [B], real episodes only: whether the episode ended with the lap done (CarRacing's "lap_finished")
    laps: np.ndarray | None = None
    # int64 [B], real episodes only: steps at the end of each episode since its last new tile (0 if the last
    # step reached one); a lost track that ends with hundreds is a car that stopped trying, not one that spun
    steps_since_last_tile: np.ndarray | None = None
