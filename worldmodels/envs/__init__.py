"""The gymnasium environments this package provides, registered under the ``WorldModels``
namespace when ``worldmodels`` is imported (gymnasium 1.x has no plugin entry points, but
``gymnasium.make("worldmodels:WorldModels/...")`` imports the package itself first).

- ``WorldModels/FastCarRacing-v3``: CarRacing-v3 with the fast renderer
  (``fast_car_racing.FastCarRacing``): stock physics, rewards and time limit, every stock
  constructor argument, plus ``downscale``, ``agent_frames`` and ``frame``.
- ``WorldModels/CarRacingDream-v0``: a dream inside M (``dream_env.DreamEnv``), made from a
  checkpoint folder (default: the shipped ``pretrained/``) and a series folder.

Both entry points are strings, so registering imports neither pygame, Box2D nor torch, and
an env's spec, its JSON and a pickled env rebuild the same env with the same settings.
"""

import gymnasium as gym

from worldmodels.constants import MAX_EPISODE_STEPS

NAMESPACE = "WorldModels"
FAST_CAR_RACING_ID = f"{NAMESPACE}/FastCarRacing-v3"
DREAM_ID = f"{NAMESPACE}/CarRacingDream-v0"


def register_envs() -> None:
    """Register both ids (again is harmless: an id already there is left as it is)."""
    if FAST_CAR_RACING_ID not in gym.registry:
        gym.register(FAST_CAR_RACING_ID, entry_point="worldmodels.envs.fast_car_racing:FastCarRacing",
                     max_episode_steps=MAX_EPISODE_STEPS, reward_threshold=900)  # as stock CarRacing-v3
    if DREAM_ID not in gym.registry:
        gym.register(DREAM_ID, entry_point="worldmodels.envs.dream_env:DreamEnv")  # DreamEnv ends its own dreams

