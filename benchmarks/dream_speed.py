"""Dream steps per second: a batch of dreams inside M, each with its own controller.

Runs ``run_dream_episodes`` (M step, temperature sampling, reward and done heads, C) for a
batch of random controllers from real first latents, with all torch threads. Counts only
the steps of dreams that have not ended. Usage:

    python benchmarks/dream_speed.py --checkpoint-dir checkpoints/small --series-dir data/small/series --batch 1024

--gradient also times, in the same run, a gradient search's dreams (05 --dream --gradient:
the same batch of dreams driven by one controller that learns, with the backward pass and an
Adam update every --truncation steps) beside the CMA-ES dreams:

    python benchmarks/dream_speed.py --gradient --checkpoint-dir pretrained/dream --series-dir pretrained/dream --batch 256 --steps 1000

--gym-env instead times the gymnasium DreamEnv (WorldModels/CarRacingDream-v0: one dream,
random actions, as a gymnasium agent steps it) with one torch thread and with torch's
default threads, first alone and then as --copies processes at once (as vector-env workers
or other jobs share the cores):

    python benchmarks/dream_speed.py --gym-env --checkpoint-dir pretrained --series-dir pretrained
"""

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import MDRNN_FILE, load_model  # noqa: E402
from worldmodels.cli import finite_float  # noqa: E402
from worldmodels.controller import parameter_count  # noqa: E402
from worldmodels.dream import DreamBatch, run_dream_episodes  # noqa: E402
from worldmodels.dream_gradient import ascend_in_dreams, new_gradient_search  # noqa: E402
from worldmodels.envs.dream_env import DreamEnv  # noqa: E402
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents  # noqa: E402


def gym_env_steps_per_second(checkpoint_dir: str, series_dir: str, threads: int | None, steps: int) -> float:
    """One DreamEnv stepped ``steps`` times with random actions (dreams that end restart)."""
    env = DreamEnv(checkpoint_dir, series_dir, threads=threads)
    env.reset(seed=0)
    env.action_space.seed(0)
    started = time.perf_counter()
    for _ in range(steps):
        *_, done, truncated, _ = env.step(env.action_space.sample())
        if done or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def time_gym_env(args: argparse.Namespace) -> None:
    for copies in (1, args.copies):
        for threads in (1, None):
            with multiprocessing.get_context("spawn").Pool(copies) as pool:
                rates = pool.starmap(gym_env_steps_per_second, [(args.checkpoint_dir, args.series_dir, threads, args.steps)] * copies)
            print(f"{copies} DreamEnv process{'es' if copies > 1 else ''} at once, "
                  f"{'1 torch thread' if threads else f'default torch threads ({torch.get_num_threads()})'}: "
                  f"{np.mean(rates):,.0f} steps/s each ({args.steps} steps)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="checkpoints/small")
    parser.add_argument("--series-dir", default="data/small/series")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--temperature", type=finite_float, default=1.15)
    parser.add_argument("--gradient", action="store_true", help="also time a gradient search's dreams (see above)")
    parser.add_argument("--truncation", type=int, default=50, help="--gradient: steps between its updates")
    parser.add_argument("--gym-env", action="store_true", help="time the gymnasium DreamEnv instead (see above)")
    parser.add_argument("--copies", type=int, default=2, help="--gym-env: processes stepping at once")
    args = parser.parse_args()
    if args.gym_env:
        time_gym_env(args)
        return
    mdrnn = load_model(Path(args.checkpoint_dir) / MDRNN_FILE, "mdrnn")
    starts = read_initial_latents(Path(args.series_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, mdrnn.made_from.get("vae"))["mu"].astype(np.float32)
    rng = np.random.default_rng(0)
    z0 = starts[rng.integers(len(starts), size=args.batch)]
    params = rng.normal(0, 0.1, (args.batch, parameter_count(mdrnn.z_size + mdrnn.hidden_size))).astype(np.float32)
    dropout = mdrnn.dropout > 0  # as the search dreams: a new dropout mask every step
    seeds = list(range(args.batch))
    started = time.perf_counter()
    results = run_dream_episodes(mdrnn, params, z0, seeds, args.temperature, args.steps, dropout=dropout)
    elapsed = time.perf_counter() - started
    cma_rate = results.steps.sum() / elapsed
    print(f"batch {args.batch}, up to {args.steps} steps, tau {args.temperature}{', dropout masks' if dropout else ''}, "
          f"{torch.get_num_threads()} torch threads: {cma_rate:,.0f} dream steps/s ({results.steps.sum()} steps in {elapsed:.1f} s; "
          f"mean dream length {results.steps.mean():.0f})")
    if args.gradient:
        for p in mdrnn.parameters():
            p.requires_grad_(False)
        state = new_gradient_search(params.shape[1], 0.02, {})
        dreams = DreamBatch(mdrnn, torch.as_tensor(z0), seeds, args.temperature, dropout=dropout)
        started = time.perf_counter()
        learned = ascend_in_dreams(dreams, state, "zh", args.steps, args.truncation)
        elapsed = time.perf_counter() - started
        rate = learned.steps.sum() / elapsed
        print(f"the same dreams learning by gradient (one controller, backward pass and Adam every {args.truncation} steps): "
              f"{rate:,.0f} dream steps/s ({learned.steps.sum()} steps in {elapsed:.1f} s), {rate / cma_rate:.2f} x the CMA-ES dreams")

if __name__ == "__main__":
    main()
