"""How much of a quantity (the car's true speed) a representation (z, h, c) holds: a linear
ridge probe, cross-validated over episodes.

Steps of one episode are strongly correlated, so a probe fitted on some steps of an episode
and scored on others overfits unseen; here every split is by whole episodes. The outer folds
score the probe; inside each outer fold's training episodes, an inner cross-validation (again
over episodes) chooses the ridge penalty from a grid, so no held-out episode chooses anything.
Features are standardised on the training episodes of each fit.
"""

from dataclasses import dataclass

import numpy as np

PENALTIES = tuple(10.0 ** p for p in range(-2, 6))  # ridge penalties tried, relative to one standardised feature's sum of squares per step


@dataclass(frozen=True)
class ProbeScore:
    """Held-out R^2 of each outer fold and the penalty the inner folds chose for it."""
    r2: np.ndarray  # [folds]
    penalties: np.ndarray  # [folds]

    @property
    def mean(self) -> float:
        return float(self.r2.mean())

    @property
    def std(self) -> float:
        return float(self.r2.std())

    def __str__(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


def episode_folds(episodes: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """The episode indices of each fold: a seeded shuffle cut into ``folds`` near-equal parts."""
    if not 2 <= folds <= episodes:
        raise ValueError(f"need 2 <= folds <= episodes, got {folds} folds of {episodes} episodes")
    return np.array_split(np.random.default_rng(seed).permutation(episodes), folds)


def r_squared(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - residual / total sum of squares (total about the target's own mean)."""
    return float(1 - ((predicted - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())


class _RidgePath:
    """Ridge fits for every penalty from one eigendecomposition of the training episodes'
    standardised X^T X (features [N, F], targets [N])."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.mean, self.scale = x.mean(0), x.std(0) + 1e-8
        self.y_mean, self.rows = y.mean(), len(x)
        xs = (x - self.mean) / self.scale
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(xs.T @ xs)
        self.projected = self.eigenvectors.T @ (xs.T @ (y - self.y_mean))

    def predict(self, x: np.ndarray, penalty: float) -> np.ndarray:
        weights = self.eigenvectors @ (self.projected / (self.eigenvalues + penalty * self.rows))
        return ((x - self.mean) / self.scale) @ weights + self.y_mean


def _choose_penalty(xs: list[np.ndarray], ys: list[np.ndarray], folds: int, seed: int, penalties: tuple[float, ...]) -> float:
    """The penalty with the best pooled R^2 over an inner cross-validation of these episodes."""
    errors = np.zeros(len(penalties))
    for held in episode_folds(len(xs), min(folds, len(xs)), seed):
        fitted = np.setdiff1d(np.arange(len(xs)), held)
        path = _RidgePath(np.vstack([xs[i] for i in fitted]), np.concatenate([ys[i] for i in fitted]))
        x_held, y_held = np.vstack([xs[i] for i in held]), np.concatenate([ys[i] for i in held])
        errors += [((path.predict(x_held, p) - y_held) ** 2).sum() for p in penalties]
    return penalties[int(np.argmin(errors))]


def cross_validated_probe(xs: list[np.ndarray], ys: list[np.ndarray], folds: int = 5, seed: int = 0,
                          penalties: tuple[float, ...] = PENALTIES) -> ProbeScore:
    """Held-out R^2 of a ridge probe from features to target, per outer fold over episodes.

    xs: per episode features [T_e, F]; ys: per episode targets [T_e]. Each outer fold's
    penalty is chosen by ``folds``-fold cross-validation over the other episodes."""
    if len(xs) != len(ys) or any(len(x) != len(y) for x, y in zip(xs, ys)):
        raise ValueError("xs and ys must hold the same episodes with the same steps")
    r2, chosen = [], []
    for fold, held in enumerate(episode_folds(len(xs), folds, seed)):
        fitted = np.setdiff1d(np.arange(len(xs)), held)
        penalty = _choose_penalty([xs[i] for i in fitted], [ys[i] for i in fitted], folds, seed + 1 + fold, penalties)
        path = _RidgePath(np.vstack([xs[i] for i in fitted]), np.concatenate([ys[i] for i in fitted]))
        r2.append(r_squared(path.predict(np.vstack([xs[i] for i in held]), penalty), np.concatenate([ys[i] for i in held])))
        chosen.append(penalty)
    return ProbeScore(np.array(r2), np.array(chosen))
