"""World Models (Ha & Schmidhuber, 2018) on gymnasium's CarRacing-v3.

One concept per module: ``constants`` and ``errors`` (shared, dependency-free),
``frames`` (preprocessing), ``episodes`` (file formats),
``vision`` (V: the VAE and the VAE-GAN behind one interface), ``mdrnn`` (M), ``controller``
(C), ``training`` (the epoch loop of stages 02 and 04), ``rollout`` (running envs with or
without the agent), ``parallel`` (the worker pool), ``evolution`` (CMA-ES with saved state),
``envs`` (the gymnasium environments, registered on import: see worldmodels/envs).
"""

from worldmodels.envs import register_envs

register_envs()  # the gymnasium ids (imports only gymnasium: no pygame, Box2D or torch)
