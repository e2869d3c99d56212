"""The exploration policy that collects V's and M's training data (stage 01).

A random walk on actions with a gas bias: steering, gas and brake each follow a
mean-reverting random walk (an Ornstein-Uhlenbeck process). Compared with independent
random actions per frame, correlated steering makes real turns, so the car drives along
and across the track, leaves it into the grass and sometimes comes back, instead of
jittering in place. The gas walk reverts to 0.3, so the car keeps moving but slowly
enough to turn (a walk around 0.5 kept the road in view less often); the brake walk
reverts below zero and is clipped, so it brakes now and then for a few frames.

Now and then the walk is interrupted by a stop (full brake, no gas: the car comes to rest
and stays there) or a sprint (full gas). Without them M never sees a car at rest or at top
speed, and a controller trained in M's dream finds such blind spots first: a dream M that
had only seen the car move from its starting frame paid for standing still there.
"""

import numpy as np

# (mean, reversion rate per step, noise std per step) of each action's walk
STEER_WALK = (0.0, 0.1, 0.25)
GAS_WALK = (0.3, 0.1, 0.1)
BRAKE_WALK = (-0.3, 0.1, 0.1)
# (chance per step of starting one, shortest, longest in steps) of the interruptions
STOP = (1 / 400, 20, 120)
SPRINT = (1 / 400, 20, 80)


class RandomWalkPolicy:
    """Correlated random actions; ``rng`` makes every episode reproducible."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.walks = np.array([STEER_WALK, GAS_WALK, BRAKE_WALK], dtype=np.float64)
        self.state = self.walks[:, 0].copy()
        self.override, self.override_steps = np.zeros(2), 0  # (gas, brake) of a stop or sprint, steps left

    def __call__(self) -> np.ndarray:
        mean, rate, std = self.walks.T
        self.state += rate * (mean - self.state) + std * self.rng.standard_normal(3)
        self.state = np.clip(self.state, -1.0, 1.0)
        action = self.state.copy()
        action[1:] = np.clip(action[1:], 0.0, 1.0)
        start = self.rng.random()
        if self.override_steps == 0:
            for (chance, shortest, longest), pedals in ((STOP, (0.0, 1.0)), (SPRINT, (1.0, 0.0))):
                if start < chance:
                    self.override, self.override_steps = np.array(pedals), int(self.rng.integers(shortest, longest + 1))
                    break
                start -= chance
        if self.override_steps > 0:
            action[1:] = self.override
            self.override_steps -= 1
        return action.astype(np.float32)
