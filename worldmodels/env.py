"""The CarRacing-v3 environment and the track seeds each use draws from.

Track seeds come from disjoint ranges, so data collection, controller training, the
periodic check of the CMA mean and the final evaluation never share a track.
"""

import gymnasium as gym

from worldmodels.constants import MAX_EPISODE_STEPS
from worldmodels.envs import FAST_CAR_RACING_ID

ENV_ID = "CarRacing-v3"

DATA_SEED_BASE = 0  # stage 01 episode i uses track seed i
TRAIN_SEED_BASE = 10_000_000  # stage 05 training episodes
CHECK_SEED_BASE = 20_000_000  # fixed tracks the CMA mean is scored on every K generations
TEST_SEED_BASE = 30_000_000  # fresh tracks for the final evaluation


def make_env(max_steps: int = MAX_EPISODE_STEPS, fast_render: bool = False, agent_frames: bool = False) -> gym.Env:
    """CarRacing-v3 with continuous actions and a time limit of ``max_steps``.

    fast_render: draw observations with ``FastCarRacing`` (same physics, rewards and
    wrappers; frames drawn on a smaller canvas) instead of the stock renderer.
    agent_frames (fast renderer only): observations are V's 64x64 frames, drawn directly."""
    if not fast_render:
        if agent_frames:
            raise ValueError("agent_frames needs the fast renderer")
        return gym.make(ENV_ID, continuous=True, max_episode_steps=max_steps)
    return gym.make(FAST_CAR_RACING_ID, continuous=True, max_episode_steps=max_steps, agent_frames=agent_frames)
