"""CarRacing-v3's shapes that every stage shares. Dependency-free, so that file formats,
models and the dream import them without gymnasium's Box2D and pygame."""

ACTION_SIZE = 3  # steering in [-1, 1], gas in [0, 1], brake in [0, 1]
ACTION_LOW = (-1.0, 0.0, 0.0)  # the bounds of CarRacing-v3's continuous action space
ACTION_HIGH = (1.0, 1.0, 1.0)
MAX_EPISODE_STEPS = 1000  # CarRacing-v3's own time limit
