"""World Models (Ha & Schmidhuber, 2018) on gymnasium's CarRacing-v3.

One concept per module: ``frames`` (preprocessing), ``episodes`` (file formats),
``vae`` (V), ``mdrnn`` (M), ``controller`` (C), ``rollout`` (running envs with or without
the agent), ``parallel`` (the worker pool), ``evolution`` (CMA-ES with saved state).
"""
