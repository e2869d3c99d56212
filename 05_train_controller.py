"""Stage 05: find the controller C with CMA-ES, acting on V's z and M's h in CarRacing-v3.

Each generation, every candidate drives EPISODES_PER_CANDIDATE tracks (the same new tracks
for all candidates of a generation); its fitness is the mean return. Every CHECK_EVERY
generations the CMA mean drives CHECK_EPISODES fixed tracks, and the best-scoring mean is
saved as checkpoints/controller.pt. The CMA-ES state is saved every generation
(checkpoints/cma_state.pkl), so an interrupted run resumes; checkpoints/controller_log.csv
has a row per generation.

--evaluate N runs the saved controller on N fresh tracks and prints mean ± std.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import save_torch
from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, load_checkpoint
from worldmodels.cli import require_at_least, run_stage
from worldmodels.controller import parameter_count
from worldmodels.env import CHECK_SEED_BASE, MAX_EPISODE_STEPS, TEST_SEED_BASE, TRAIN_SEED_BASE
from worldmodels.episodes import DataError
from worldmodels.evolution import load_search, new_search, save_search
from worldmodels.logs import CsvLog
from worldmodels.parallel import WorkerPool, default_workers
from worldmodels.rollout import load_agent_models, run_agent_parallel

GENERATIONS = 1800  # the paper's full agent ran about 1800 generations
POPULATION = 64  # CMA-ES candidates per generation
EPISODES_PER_CANDIDATE = 16  # tracks each candidate drives; fitness is the mean return
SIGMA0 = 0.1  # initial CMA-ES step size (x0 = 0)
CHECK_EVERY = 25  # generations between checks of the CMA mean
CHECK_EPISODES = 100  # fixed tracks the CMA mean is checked on
MAX_STEPS = MAX_EPISODE_STEPS  # steps per episode at most
PATIENCE = 0  # end a training episode after this many steps without reward (0: never)
USE_HIDDEN = True  # C sees [z, h] (the full agent); False: z only
SEED = 0  # CMA-ES sampling
WORKERS = default_workers()  # one process per core
FAST_RENDER = True  # worldmodels.fast_env: stock physics and rewards, 12x faster frames (--no-fast-render: stock)
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=GENERATIONS)
    parser.add_argument("--population", type=int, default=POPULATION)
    parser.add_argument("--episodes-per-candidate", type=int, default=EPISODES_PER_CANDIDATE)
    parser.add_argument("--sigma0", type=float, default=SIGMA0)
    parser.add_argument("--check-every", type=int, default=CHECK_EVERY)
    parser.add_argument("--check-episodes", type=int, default=CHECK_EPISODES)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    parser.add_argument("--patience", type=int, default=PATIENCE, help="training episodes end after this many steps without reward (0: never)")
    parser.add_argument("--z-only", dest="use_hidden", action="store_false", default=USE_HIDDEN, help="C sees z only, not [z, h]")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--fast-render", action=argparse.BooleanOptionalAction, default=FAST_RENDER,
                        help="draw frames with the fast renderer (same physics and rewards); --no-fast-render draws them the stock way")
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="start a new search even if a saved one exists")
    parser.add_argument("--evaluate", type=int, metavar="N", default=0, help="only evaluate the saved controller on N fresh tracks")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "generations", "episodes_per_candidate", "check_every", "check_episodes", "max_steps", "workers")
    require_at_least(parser, args, 2, "population")
    if args.sigma0 <= 0 or args.patience < 0 or args.evaluate < 0:
        parser.error("--sigma0 must be positive; --patience and --evaluate non-negative")
    return args


def save_controller(path: Path, params: np.ndarray, config: dict, **extra) -> None:
    save_torch(path, {"kind": "controller", "config": config, "params": torch.as_tensor(params, dtype=torch.float32), **extra})


def evaluate_saved(args: argparse.Namespace, pool: WorkerPool, paths: dict[str, str], config: dict) -> None:
    checkpoint = load_checkpoint(paths["controller"], "controller", "05_train_controller.py")
    if checkpoint["config"] != config:
        raise DataError(f"{paths['controller']}: built for {checkpoint['config']}, not {config}; retrain it with 05_train_controller.py --restart")
    params = np.repeat(checkpoint["params"].numpy()[None], args.evaluate, axis=0)
    seeds = [TEST_SEED_BASE + i for i in range(args.evaluate)]
    results = run_agent_parallel(pool, paths["vae"], paths["mdrnn"], params, seeds, args.max_steps,
                                 use_hidden=config["use_hidden"], fast_render=args.fast_render, desc="evaluation episodes")
    print(f"controller {paths['controller']} (generation {checkpoint['generation']}) on {args.evaluate} fresh tracks "
          f"(seeds {seeds[0]}..{seeds[-1]}, {'fast' if args.fast_render else 'stock'} renderer): {results.returns.mean():.1f} ± {results.returns.std():.1f} "
          f"(min {results.returns.min():.1f}, max {results.returns.max():.1f})")


def main(argv=None) -> None:
    args = parse_args(argv)
    directory = Path(args.checkpoint_dir)
    paths = {name: str(directory / file) for name, file in
             (("vae", VAE_FILE), ("mdrnn", MDRNN_FILE), ("controller", CONTROLLER_FILE))}
    vae, mdrnn = load_agent_models(paths["vae"], paths["mdrnn"])  # fails early with a clear message
    input_size = vae.z_size + (mdrnn.hidden_size if args.use_hidden else 0)
    config = {"input_size": input_size, "use_hidden": args.use_hidden, "z_size": vae.z_size, "hidden_size": mdrnn.hidden_size}
    dimension = parameter_count(input_size)

    with WorkerPool(args.workers) as pool:
        if args.evaluate:
            evaluate_saved(args, pool, paths, config)
            return

        state_path = directory / "cma_state.pkl"
        search_config = config | {"population": args.population, "sigma0": args.sigma0, "seed": args.seed}
        if state_path.exists() and not args.restart:
            state = load_search(state_path, search_config)
            print(f"resuming the search from {state_path} after generation {state.generation}")
        else:
            state = new_search(dimension, args.sigma0, args.population, args.seed, search_config)
        print(f"CMA-ES over {dimension} parameters: population {args.population} x {args.episodes_per_candidate} "
              f"episodes, {args.workers} workers")
        log = CsvLog(directory / "controller_log.csv",
                     ["generation", "best", "mean", "worst", "sigma", "check_mean", "check_std", "env_steps", "seconds"],
                     keep_rows=state.generation)
        check_seeds = [CHECK_SEED_BASE + i for i in range(args.check_episodes)]

        while state.generation < args.generations:
            started = time.time()
            generation = state.generation + 1
            candidates = np.asarray(state.es.ask())
            seeds = [TRAIN_SEED_BASE + generation * args.episodes_per_candidate + e for e in range(args.episodes_per_candidate)]
            params = np.repeat(candidates, len(seeds), axis=0)
            results = run_agent_parallel(pool, paths["vae"], paths["mdrnn"], params, seeds * len(candidates), args.max_steps,
                                         args.patience, args.use_hidden, args.fast_render, desc=f"generation {generation}")
            fitness = results.returns.reshape(len(candidates), len(seeds)).mean(axis=1)
            state.es.tell(list(candidates), list(-fitness))
            state.generation = generation
            env_steps = int(results.steps.sum())

            check_mean = check_std = ""
            if generation % args.check_every == 0 or generation == args.generations:
                mean = np.asarray(state.es.mean)
                check = run_agent_parallel(pool, paths["vae"], paths["mdrnn"], np.repeat(mean[None], len(check_seeds), axis=0),
                                           check_seeds, args.max_steps, use_hidden=args.use_hidden, fast_render=args.fast_render,
                                           desc="checking the CMA mean")
                check_mean, check_std = check.returns.mean(), check.returns.std()
                env_steps += int(check.steps.sum())
                if check_mean > state.best_score:
                    state.best_score, state.best_generation = check_mean, generation
                    save_controller(Path(paths["controller"]), mean, config, generation=generation, check_score=check_mean)
            save_search(state_path, state)
            log.append(generation=generation, best=f"{fitness.max():.1f}", mean=f"{fitness.mean():.1f}", worst=f"{fitness.min():.1f}",
                       sigma=f"{state.es.sigma:.4f}", check_mean=check_mean if check_mean == "" else f"{check_mean:.1f}",
                       check_std=check_std if check_std == "" else f"{check_std:.1f}", env_steps=env_steps,
                       seconds=f"{time.time() - started:.1f}")
            checked = f"; CMA mean on {len(check_seeds)} check tracks {check_mean:.1f} ± {check_std:.1f}" if check_mean != "" else ""
            print(f"generation {generation}: best {fitness.max():.1f}, mean {fitness.mean():.1f}, worst {fitness.min():.1f}, "
                  f"sigma {state.es.sigma:.3f}{checked}", flush=True)

    print(f"best CMA mean: {state.best_score:.1f} on the check tracks at generation {state.best_generation}")
    print(f"wrote {paths['controller']}, {state_path} and {log.path}")
    print("next: python 05_train_controller.py --evaluate 100")


if __name__ == "__main__":
    run_stage(main)
