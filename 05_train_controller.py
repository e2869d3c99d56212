"""Stage 05: find the controller C with CMA-ES, acting on V's z and M's h in CarRacing-v3.

Each generation, every candidate drives EPISODES_PER_CANDIDATE tracks (the same new tracks
for all candidates of a generation); its fitness is the mean return. Every CHECK_EVERY
generations the CMA mean drives CHECK_EPISODES fixed tracks, and the best-scoring mean is
saved as checkpoints/controller.pt. The CMA-ES state is saved every generation
(checkpoints/cma_state.npz, plain data), so an interrupted run resumes (Ctrl-C or SIGTERM
stops after the episodes in progress; the unfinished generation is run again);
checkpoints/controller_log.csv has a row per generation.

--dream trains inside M instead (worldmodels/dream.py): candidates drive dreams that start
from real first latents (SERIES_DIR/initial_latents.npz) at temperature TEMPERATURE. The
CMA mean is then checked both in dreams and on the real check tracks, side by side in the
log; the kept controller is the one with the best dream check, so reality never steers a
dream-trained search. --init-from starts the search from a saved controller (for example a
dream-trained one, fine-tuned in the real env). --members K dreams in M and its ensemble
members 1..K-1 (04_train_rnn.py --member k), and --disagreement D charges each dreamed step
D x the Ms' disagreement about its reward (worldmodels/dream.py, DreamBatch).

--curiosity W (real env only) ranks candidates, and checks the CMA mean, by return + W x
M's surprise: the NLL M gives each new frame's z, predicted one step earlier, summed over
the episode (the log's "surprise" column is its mean). A controller searched this way
drives where M predicts badly; collecting with it (01_generate_data.py --policy) shows M
what it has not learned yet.

--evaluate [N] runs the saved controller on N tracks never used in training (default
EVALUATION_EPISODES, seeds from --first-track) and prints mean ± std, min and max, and what
M's reward head predicted for the same episodes (what a dream would have paid for them).
It writes checkpoints/evaluation.csv (a row per episode) and drive_best.gif,
drive_median.gif and drive_worst.gif (with stills, .png): the frame C saw, V's
reconstruction and M's one-step prediction side by side (worldmodels/viewer.py). With
--dream it also scores the controller in N dreams. Dream runs and dream evaluations write
checkpoints/dream_vs_real.gif (and stills): a dream decoded by V beside the real track it
started from.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import (
    CONTROLLER_FILE,
    MDRNN_FILE,
    VAE_FILE,
    controller_config,
    fingerprint,
    load_controller,
    load_members,
    refuse_to_replace,
    save_controller,
)
from worldmodels.cli import finite_float, require_at_least, require_folders, run_stage
from worldmodels.controller import parameter_count
from worldmodels.curves import draw_curves
from worldmodels.dream import first_latents, run_dream_episodes
from worldmodels.env import CHECK_SEED_BASE, MAX_EPISODE_STEPS, TEST_SEED_BASE, TRAIN_SEED_BASE
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents
from worldmodels.errors import DataError
from worldmodels.evolution import STATE_FILE, load_search, new_search, save_search
from worldmodels.interrupt import Interrupted, stop_requested
from worldmodels.logs import write_csv
from worldmodels.mdrnn import MDNRNN
from worldmodels.parallel import WorkerPool, default_workers
from worldmodels.rollout import EpisodeResults, load_agent_models, run_agent_parallel
from worldmodels.viewer import record_real, write_dream_vs_real, write_drive

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
DREAM = False  # train in the dream (M) instead of the real env
TEMPERATURE = 1.15  # dream sampling temperature tau (the paper's best for its Doom dream)
MEMBERS = 1  # Ms the dream runs: M and members 1.. of 04_train_rnn.py --member (1: M alone)
DISAGREEMENT = 0.0  # dream reward = mean of the Ms' rewards - DISAGREEMENT x their std (a charge for M's guesses)
CURIOSITY = 0.0  # weight of M's surprise (summed NLL of each new z) added to a real episode's return (0: off)
SERIES_DIR = "data/series"  # where dreams find their real first latents
INIT_FROM = ""  # a controller.pt to start the search from ("" : the zero controller)
EVALUATION_EPISODES = 100  # --evaluate with no N: the paper's protocol, 100 tracks
FIRST_TEST_TRACK = TEST_SEED_BASE  # evaluation tracks are FIRST_TEST_TRACK, +1, ... (never used in training)
GIF_STEPS = 300  # steps shown in the GIFs (6 s of driving)
FAST_RENDER = True  # worldmodels.fast_env: stock physics and rewards, 12x faster frames (--no-fast-render: stock)
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=GENERATIONS)
    parser.add_argument("--population", type=int, default=POPULATION)
    parser.add_argument("--episodes-per-candidate", type=int, default=EPISODES_PER_CANDIDATE)
    parser.add_argument("--sigma0", type=finite_float, default=SIGMA0)
    parser.add_argument("--check-every", type=int, default=CHECK_EVERY)
    parser.add_argument("--check-episodes", type=int, default=CHECK_EPISODES)
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS)
    parser.add_argument("--patience", type=int, default=PATIENCE, help="training episodes end after this many steps without reward (0: never)")
    parser.add_argument("--z-only", dest="use_hidden", action="store_false", default=USE_HIDDEN, help="C sees z only, not [z, h]")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--fast-render", action=argparse.BooleanOptionalAction, default=FAST_RENDER,
                        help="draw frames with the fast renderer (same physics and rewards); --no-fast-render draws them the stock way")
    parser.add_argument("--dream", action=argparse.BooleanOptionalAction, default=DREAM, help="train inside M instead of the real env")
    parser.add_argument("--temperature", type=finite_float, default=TEMPERATURE, help="dream sampling temperature")
    parser.add_argument("--members", type=int, default=MEMBERS,
                        help="dream in M and ensemble members 1..MEMBERS-1 (mdrnn_member<k>.pt): z from one at random each step")
    parser.add_argument("--disagreement", type=finite_float, default=DISAGREEMENT,
                        help="dream reward = the Ms' mean reward - DISAGREEMENT x their std")
    parser.add_argument("--curiosity", type=finite_float, default=CURIOSITY,
                        help="in the real env, rank candidates by return + CURIOSITY x M's surprise (its NLL of every new z)")
    parser.add_argument("--series-dir", default=SERIES_DIR, help="folder with initial_latents.npz (for --dream)")
    parser.add_argument("--gif-steps", type=int, default=GIF_STEPS, help="steps shown in the driving and dream GIFs (0: none)")
    parser.add_argument("--init-from", default=INIT_FROM, help="controller.pt whose parameters start the search")
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="start a new search even if a saved one exists")
    parser.add_argument("--evaluate", type=int, nargs="?", const=EVALUATION_EPISODES, metavar="N", default=None,
                        help=f"only evaluate the saved controller on N fresh tracks (N defaults to {EVALUATION_EPISODES})")
    parser.add_argument("--first-track", type=int, default=FIRST_TEST_TRACK, help="track seed of the first evaluation episode")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "generations", "episodes_per_candidate", "check_every", "check_episodes", "max_steps", "workers")
    require_at_least(parser, args, 2, "population")
    if args.evaluate is not None:
        require_at_least(parser, args, 1, "evaluate")
    if args.sigma0 <= 0 or args.temperature <= 0 or args.patience < 0 or args.gif_steps < 0:
        parser.error("--sigma0 and --temperature must be positive; --patience and --gif-steps non-negative")
    if args.curiosity and args.dream:
        parser.error("--curiosity rewards M's surprise at real frames; a dream has none (drop --dream or --curiosity)")
    require_at_least(parser, args, 1, "members")
    if args.members > 1 and not args.dream:
        parser.error("--members are Ms to dream in: add --dream")
    if args.disagreement < 0 or (args.disagreement and args.members < 2):
        parser.error("--disagreement must be non-negative and needs --members 2 or more")
    require_folders(parser, args, "checkpoint_dir", "series_dir")
    return args


def evaluate_saved(args: argparse.Namespace, pool: WorkerPool, paths: dict[str, str], config: dict, starts: np.ndarray | None,
                   members: list[MDNRNN]) -> None:
    """The saved controller on ``args.evaluate`` tracks: a summary, a CSV row per episode,
    and GIFs of its best, median and worst episodes."""
    checkpoint = load_controller(paths["controller"], config)
    params = np.repeat(checkpoint["params"].numpy()[None], args.evaluate, axis=0)
    seeds = [args.first_track + i for i in range(args.evaluate)]
    try:
        results = run_agent_parallel(pool, paths["vae"], paths["mdrnn"], params, seeds, args.max_steps,
                                     use_hidden=config["use_hidden"], fast_render=args.fast_render, desc="evaluation episodes")
    except Interrupted as stop:
        raise Interrupted(f"the evaluation was stopped unfinished ({stop}); nothing was written: re-run to evaluate") from None
    print(f"controller {paths['controller']} (generation {checkpoint['generation']}, trained in the "
          f"{checkpoint.get('trained_in', 'real')} env) on {args.evaluate} tracks (seeds {seeds[0]}..{seeds[-1]}, "
          f"{'fast' if args.fast_render else 'stock'} renderer): {summary(results.returns)}")
    print(f"M's reward head on the same episodes: {summary(results.predicted_returns)}")
    dreamed = None
    if starts is not None:
        _, mdrnn = load_agent_models(paths["vae"], paths["mdrnn"])
        dreamed = run_dreams(mdrnn, params, starts, seeds, args, members).returns
        print(f"in {args.evaluate} dreams at temperature {args.temperature}: {summary(dreamed)}")
    table = Path(args.checkpoint_dir) / "evaluation.csv"
    replaced = " (it replaces the earlier evaluation's)" if table.exists() else ""
    write_csv(table, ["episode", "track_seed", "return", "steps", "m_predicted_return", "dream_return"],
              [{"episode": i, "track_seed": seed, "return": f"{results.returns[i]:.2f}", "steps": int(results.steps[i]),
                "m_predicted_return": f"{results.predicted_returns[i]:.2f}",
                "dream_return": "" if dreamed is None else f"{dreamed[i]:.2f}"} for i, seed in enumerate(seeds)])
    print(f"wrote {table}, one row per episode{replaced}")
    try:
        write_drive_gifs(args, paths, checkpoint["params"].numpy(), seeds, results.returns, config["use_hidden"])
        if starts is not None:
            write_dream_gif(args, paths, config)
    except Interrupted as stop:
        raise Interrupted(f"{table} is written, but {stop}") from None


def write_drive_gifs(args: argparse.Namespace, paths: dict[str, str], params: np.ndarray, seeds: list[int], returns: np.ndarray,
                     use_hidden: bool) -> None:
    """drive_{best,median,worst}.gif (and .png stills): the first GIF_STEPS steps of those
    evaluation episodes, with V's reconstruction and M's prediction of every frame."""
    if args.gif_steps == 0:
        return
    vae, mdrnn = load_agent_models(paths["vae"], paths["mdrnn"])
    order = np.argsort(returns, kind="stable")
    for name, i in tqdm([("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])], desc="drive GIFs"):
        if stop_requested():
            raise Interrupted(f"the GIFs were stopped before drive_{name}.gif; re-run --evaluate to make them")
        recording = record_real(vae, mdrnn, params, seeds[i], min(args.gif_steps, args.max_steps), use_hidden, args.fast_render)
        path = Path(args.checkpoint_dir) / f"drive_{name}.gif"
        write_drive(path, recording, f"{name} of {len(returns)}: track {seeds[i]}, return {returns[i]:.1f}")
        tqdm.write(f"wrote {path} and its stills (.png): track {seeds[i]}, the first {len(recording.rewards)} steps")


def run_dreams(mdrnn: MDNRNN, params: np.ndarray, starts: np.ndarray, seeds: list[int], args: argparse.Namespace,
               members: list[MDNRNN]) -> EpisodeResults:
    """Controller params[i] in dream seeds[i]: the seed picks its first latent among ``starts``
    and its random stream, at the run's temperature, in M and its ensemble ``members``."""
    return run_dream_episodes(mdrnn, params, first_latents(starts, seeds), seeds, args.temperature, args.max_steps,
                              args.use_hidden, members, args.disagreement)


def objective(results: EpisodeResults, curiosity: float) -> np.ndarray:
    """What a real episode scores in the search: its return, plus ``curiosity`` x M's
    surprise along it (curiosity: a reward for going where M predicts badly)."""
    return results.returns + curiosity * results.surprise if curiosity else results.returns


def summary(returns: np.ndarray) -> str:
    return f"{returns.mean():.1f} ± {returns.std():.1f} (min {returns.min():.1f}, max {returns.max():.1f})"


def write_dream_gif(args: argparse.Namespace, paths: dict[str, str], config: dict) -> None:
    """The saved controller in a dream beside the first evaluation track, which it starts from."""
    if args.gif_steps == 0:
        return
    if stop_requested():
        raise Interrupted("dream_vs_real.gif was not written; re-run --evaluate --dream to make it")
    vae, mdrnn = load_agent_models(paths["vae"], paths["mdrnn"])
    params = load_controller(paths["controller"], config)["params"].numpy()
    path = Path(args.checkpoint_dir) / "dream_vs_real.gif"
    real, dream = write_dream_vs_real(path, vae, mdrnn, params, args.first_track, args.temperature, args.gif_steps,
                                      use_hidden=config["use_hidden"], fast_render=args.fast_render)
    print(f"wrote {path}: {args.gif_steps} steps on track {args.first_track} (return {real.rewards.sum():.1f}) "
          f"beside its dream (return {dream.rewards.sum():.1f})")


def main(argv=None) -> None:
    args = parse_args(argv)
    directory = Path(args.checkpoint_dir)
    paths = {name: str(directory / file) for name, file in
             (("vae", VAE_FILE), ("mdrnn", MDRNN_FILE), ("controller", CONTROLLER_FILE))}
    vae, mdrnn = load_agent_models(paths["vae"], paths["mdrnn"])  # fails early with a clear message
    prepare_output(directory, needed_bytes=2**20)  # a controller, the search state and the log
    config = controller_config(vae, mdrnn, args.use_hidden)  # C belongs with this V and M
    dimension = parameter_count(config["input_size"])

    starts, members = None, []  # dreams start from real first latents
    if args.dream:
        starts = read_initial_latents(Path(args.series_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, config["vae"])["mu"].astype(np.float32)
        members = load_members(directory, args.members, vae)

    with WorkerPool(args.workers) as pool:
        if args.evaluate is not None:
            evaluate_saved(args, pool, paths, config, starts, members)
            return

        state_path, log_path = directory / STATE_FILE, directory / "controller_log.csv"
        columns = ["generation", "best", "mean", "worst", "sigma", "check_mean", "check_std", "dream_check_mean",
                   "dream_check_std", "surprise", "env_steps", "seconds"]
        # a search state of an older version of this code (a pickle, which is never loaded) counts as an output here
        refuse_to_replace(state_path, [Path(paths["controller"]), log_path, directory / "cma_state.pkl"], args.restart)
        search_config = config | {"population": args.population, "sigma0": args.sigma0, "seed": args.seed}
        if args.dream:
            search_config |= {"world": "dream", "temperature": args.temperature}
            if args.members > 1:
                search_config |= {"members": [fingerprint(member) for member in members], "disagreement": args.disagreement}
        if args.init_from:
            search_config |= {"init_from": args.init_from}
        if args.curiosity:
            search_config |= {"curiosity": args.curiosity}
        if state_path.exists() and not args.restart:
            state = load_search(state_path, search_config, columns)
            if state.best_generation > 0 and not Path(paths["controller"]).exists():
                raise DataError(f"{paths['controller']}: missing, though {state_path} kept one at generation "
                                f"{state.best_generation}; put it back, or pass --restart to start a new search")
            print(f"resuming the search from {state_path} after generation {state.generation}")
        else:
            x0 = load_controller(args.init_from, config, same_models=False)["params"].numpy() if args.init_from else None
            state = new_search(dimension, args.sigma0, args.population, args.seed, search_config, x0)
        world = f"dreams at temperature {args.temperature}" if args.dream else "the real env"
        if members:
            world += f" of M and {len(members)} members (reward: mean - {args.disagreement} x std)"
        print(f"CMA-ES over {dimension} parameters in {world}: population {args.population} x {args.episodes_per_candidate} "
              f"episodes, {args.workers} workers")
        write_csv(log_path, columns, state.log)  # the log as the search state has it
        check_seeds = [CHECK_SEED_BASE + i for i in range(args.check_episodes)]

        def real(params: np.ndarray, seeds: list[int], patience: int, desc: str) -> EpisodeResults:
            return run_agent_parallel(pool, paths["vae"], paths["mdrnn"], params, seeds, args.max_steps, patience,
                                      args.use_hidden, args.fast_render, desc=desc)

        saved = state.generation  # generations in the state file
        bar = tqdm(total=args.generations, initial=state.generation, desc="generations", unit="gen", dynamic_ncols=True)
        try:
            while state.generation < args.generations:
                started = time.time()
                generation = state.generation + 1
                candidates = np.asarray(state.es.ask())
                seeds = [TRAIN_SEED_BASE + generation * args.episodes_per_candidate + e for e in range(args.episodes_per_candidate)]
                params = np.repeat(candidates, len(seeds), axis=0)
                if args.dream:
                    results = run_dreams(mdrnn, params, starts, seeds * len(candidates), args, members)
                else:
                    results = real(params, seeds * len(candidates), args.patience, f"generation {generation}")
                fitness = objective(results, args.curiosity).reshape(len(candidates), len(seeds)).mean(axis=1)
                if not np.isfinite(fitness).all():
                    raise DataError(f"generation {generation}: a candidate's return is NaN or inf (V or M of {directory} "
                                    "misbehaves?); the search is kept as of the generation before")
                state.tell(candidates, fitness)
                env_steps = 0 if args.dream else int(results.steps.sum())

                scores = {}  # world -> (mean, std) of the CMA mean's check
                if generation % args.check_every == 0 or generation == args.generations:
                    mean = np.asarray(state.es.mean)
                    repeated = np.repeat(mean[None], len(check_seeds), axis=0)
                    check = real(repeated, check_seeds, 0, "checking the CMA mean")
                    check_scores = objective(check, args.curiosity)
                    scores["real"] = float(check_scores.mean()), float(check_scores.std())
                    env_steps += int(check.steps.sum())
                    if args.dream:
                        dreamed = run_dreams(mdrnn, repeated, starts, check_seeds, args, members).returns
                        scores["dream"] = float(dreamed.mean()), float(dreamed.std())
                    kept = scores["dream" if args.dream else "real"][0]
                    if kept > state.best_score:
                        state.best_score, state.best_generation = kept, generation
                        save_controller(Path(paths["controller"]), mean, config, generation=generation, check_score=kept,
                                        trained_in="dream" if args.dream else "real")
                shown = {f"{prefix}check_{stat}": f"{scores[world][i]:.1f}" if world in scores else ""
                         for world, prefix in (("real", ""), ("dream", "dream_")) for i, stat in enumerate(("mean", "std"))}
                state.log.append({"generation": str(generation), "best": f"{fitness.max():.1f}", "mean": f"{fitness.mean():.1f}",
                                  "worst": f"{fitness.min():.1f}", "sigma": f"{state.es.sigma:.4f}", **shown,
                                  "surprise": "" if args.dream else f"{results.surprise.mean():.1f}",
                                  "env_steps": str(env_steps), "seconds": f"{time.time() - started:.1f}"})
                save_search(state_path, state)
                write_csv(log_path, columns, state.log)
                saved = generation
                checked = "".join(f"; CMA mean on {len(check_seeds)} {'dreams' if world == 'dream' else 'check tracks'} "
                                  f"{m:.1f} ± {sd:.1f}" for world, (m, sd) in scores.items())
                bar.update()
                tqdm.write(f"generation {generation}: best {fitness.max():.1f}, mean {fitness.mean():.1f}, worst {fitness.min():.1f}, "
                           f"sigma {state.es.sigma:.3f}{checked}")
                if stop_requested() and generation < args.generations:
                    raise Interrupted("stop requested")
        except Interrupted:
            raise Interrupted(f"{state_path} holds the search after generation {saved}; re-run to go on from there") from None
        finally:
            bar.close()

    print(f"best CMA mean: {state.best_score:.1f} on the check {'dreams' if args.dream else 'tracks'} "
          f"at generation {state.best_generation}")
    print(f"wrote {paths['controller']}, {state_path}, {log_path} and {draw_curves(log_path)}")
    if args.dream:
        try:
            write_dream_gif(args, paths, config)
        except Interrupted as stop:
            raise Interrupted(f"the search is done and saved, but {stop}") from None
    print("next: python 05_train_controller.py --evaluate")


if __name__ == "__main__":
    run_stage(main)
