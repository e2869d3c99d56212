"""The CarRacing-v3 environment and the track seeds each use draws from.

Track seeds come from disjoint ranges, so that no score is reported on a track that chose it:

- data (stage 01) and training (stage 05's generations: new tracks every generation);
- **validation**: fixed tracks for every choice. The search checks the CMA mean on the first
  --check-episodes of them and keeps the best check; which run to ship and which setting wins
  are decided on them too (``05 --evaluate --tracks validation``);
- **test**: 100 tracks only for reporting a candidate already chosen
  (``05 --evaluate --tracks test``), never for choosing between candidates.

Seeds 30,000,000-59,999,999 are retired: until 2026-12-06 the shipped agents were chosen and
reported on 30,000,000-30,000,099, and ad hoc experiments drew from the rest of that range.
"""

import gymnasium as gym

from worldmodels.constants import MAX_EPISODE_STEPS
from worldmodels.envs import FAST_CAR_RACING_ID
from worldmodels.frames import PAPER_FRAME, check_frame_kind

ENV_ID = "CarRacing-v3"

DATA_SEED_BASE = 0  # stage 01 episode i uses track seed i
TRAIN_SEED_BASE = 10_000_000  # stage 05 training episodes
VALIDATION_SEED_BASE = 20_000_000  # fixed tracks for every choice: the search's checks, which run or setting wins
RETIRED_SEED_BASE = 30_000_000  # used for choosing and reporting before the validation/test split: no longer either
TEST_SEED_BASE = 60_000_000  # tracks for reporting a chosen agent only
TEST_TRACKS = 100  # the test set: TEST_SEED_BASE .. TEST_SEED_BASE + 99
SEED_RANGE_END = 70_000_000  # seeds from here on belong to no set
TRACK_SETS = {"validation": VALIDATION_SEED_BASE, "test": TEST_SEED_BASE}  # what --evaluate and --watch drive on


def track_set(seeds: list[int]) -> str:
    """The set that track ``seeds`` belong to ("data", "training", "validation", "retired",
    "test"), or "mixed" for seeds of several sets, or "other" beyond them all."""
    bounds = [(DATA_SEED_BASE, "data"), (TRAIN_SEED_BASE, "training"), (VALIDATION_SEED_BASE, "validation"),
              (RETIRED_SEED_BASE, "retired"), (TEST_SEED_BASE, "test"), (SEED_RANGE_END, "other")]
    names = {next(name for start, name in reversed(bounds) if seed >= start) for seed in seeds}
    return names.pop() if len(names) == 1 else "mixed"


def describe_tracks(seeds: list[int]) -> str:
    """e.g. "100 test tracks (seeds 60000000..60000099)"; test seeds past the 100 of the test set are said to be."""
    name = track_set(seeds)
    where = f"seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"
    extra = " (past the 100 of the test set)" if name == "test" and max(seeds) >= TEST_SEED_BASE + TEST_TRACKS else ""
    kind = {"mixed": "tracks of several sets", "other": "tracks of no set"}.get(name, f"{name} tracks")
    return f"{len(seeds)} {kind} ({where}){extra}"


def make_env(max_steps: int = MAX_EPISODE_STEPS, fast_render: bool = False, agent_frames: bool = False,
             frame_kind: str = PAPER_FRAME) -> gym.Env:
    """CarRacing-v3 with continuous actions and a time limit of ``max_steps``.

    fast_render: draw observations with ``FastCarRacing`` (same physics, rewards and
    wrappers; frames drawn on a smaller canvas) instead of the stock renderer, which always
    draws the whole frame; frame_kind: the kind V sees (frames.FRAME_KINDS), which the fast
    renderer draws.
    agent_frames (fast renderer only): observations are V's 64x64 frames, drawn directly."""
    if not fast_render:
        if agent_frames:
            raise ValueError("agent_frames needs the fast renderer")
        check_frame_kind(frame_kind)
        return gym.make(ENV_ID, continuous=True, max_episode_steps=max_steps)
    return gym.make(FAST_CAR_RACING_ID, continuous=True, max_episode_steps=max_steps, agent_frames=agent_frames,
                    frame_kind=frame_kind)
