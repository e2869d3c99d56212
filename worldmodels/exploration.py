"""The exploration policy that collects V's and M's training data (stage 01).

A random walk on actions with a gas bias: steering, gas and brake each follow a
mean-reverting random walk (an Ornstein-Uhlenbeck process). Compared with independent
random actions per frame, correlated steering makes real turns, so the car drives along
and across the track, leaves it into the grass and sometimes comes back, instead of
jittering in place. The gas walk reverts to 0.3, so the car keeps moving but slowly
enough to turn (a walk around 0.5 kept the road in view less often); the brake walk
reverts below zero and is clipped, so it brakes now and then for a few frames.
"""

import numpy as np

# (mean, reversion rate per step, noise std per step) of each action's walk
STEER_WALK = (0.0, 0.1, 0.25)
GAS_WALK = (0.3, 0.1, 0.1)
BRAKE_WALK = (-0.3, 0.1, 0.1)


class RandomWalkPolicy:
    """Correlated random actions; ``rng`` makes every episode reproducible."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.walks = np.array([STEER_WALK, GAS_WALK, BRAKE_WALK], dtype=np.float64)
        self.state = self.walks[:, 0].copy()

    def __call__(self) -> np.ndarray:
        mean, rate, std = self.walks.T
        self.state += rate * (mean - self.state) + std * self.rng.standard_normal(3)
        self.state = np.clip(self.state, -1.0, 1.0)
        action = self.state.copy()
        action[1:] = np.clip(action[1:], 0.0, 1.0)
        return action.astype(np.float32)
