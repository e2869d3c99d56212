"""Env steps per second on one core, stock vs fast renderer, measured side by side.

Both envs run the same random-walk actions on the same tracks, alternating track by track
so that drift in the machine's speed affects both alike. Usage:

    python benchmarks/env_speed.py --tracks 4 --steps 500
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.env import make_env  # noqa: E402
from worldmodels.exploration import RandomWalkPolicy  # noqa: E402


def run(seed: int, steps: int, fast_render: bool) -> tuple[int, float]:
    env = make_env(steps, fast_render)
    policy = RandomWalkPolicy(np.random.default_rng(seed))
    env.reset(seed=seed)
    started, done, count = time.perf_counter(), False, 0
    while not done:
        _, _, terminated, truncated, _ = env.step(policy())
        done, count = terminated or truncated, count + 1
    elapsed = time.perf_counter() - started
    env.close()
    return count, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    totals = {False: [0, 0.0], True: [0, 0.0]}
    for seed in range(args.tracks):
        for fast in (False, True):
            count, elapsed = run(seed, args.steps, fast)
            totals[fast][0] += count
            totals[fast][1] += elapsed
    stock, fast = (totals[k][0] / totals[k][1] for k in (False, True))
    print(f"one core, {args.tracks} tracks x up to {args.steps} steps: stock {stock:.0f} steps/s, "
          f"fast {fast:.0f} steps/s, ratio {fast / stock:.1f}x")


if __name__ == "__main__":
    main()
