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
dream-trained search (--keep-by real keeps the one with the best real check instead: the
validation tracks choose the generation, as they choose the round or the run, while the
search itself still learns from dreams alone; resuming a finished search with it keeps again
at no step). --init-from starts the search from a saved controller (for example a
dream-trained one, fine-tuned in the real env), which is checked first, as generation 0, so
the kept controller never checks worse than the start; a controller that reads less than
--inputs (a [z, h] one for a [z, h, c] search) starts it with zero weight on the rest, so it
drives exactly as before. --members K dreams in M and its ensemble
members 1..K-1 (04_train_rnn.py --member k), and --disagreement D charges each dreamed step
D x the Ms' disagreement about its reward (worldmodels/dream.py, DreamBatch); --z-disagreement W
charges W x how far their disagreement about the next z exceeds its Z_QUANTILE quantile along the
recorded episodes of SERIES_DIR (ZCharge: what the data shows them agreeing on is not charged,
a dream that leads where they part ways is). An M trained with
dropout (04_train_rnn.py --dropout) predicts every dreamed step from a new dropout mask of
its h, so each dream runs in a slightly different M (--no-dream-dropout: the whole h).
--branch-steps H makes every dream branch off a recorded episode of SERIES_DIR instead: it
starts at a real state drawn from anywhere in the episodes (V's z there, M's h after the
steps before it), so the road ahead is a real track's, and runs H steps.

--gradient (with --dream) learns C by gradient ascent on the dream's expected return, back
through M, instead of CMA-ES (worldmodels/dream_gradient.py): a generation is one batch of
POPULATION x EPISODES_PER_CANDIDATE dreams (as many as a CMA-ES generation drives), driven by
one controller that Adam updates every TRUNCATION steps at LEARNING_RATE. Checks, keeping,
the log, resuming and --init-from (fine-tuning a saved controller) are the CMA-ES search's;
its state is gradient_state.npz.

--curiosity W (real env only) ranks candidates, and checks the CMA mean, by return + W x
M's surprise: the NLL M gives each new frame's z, predicted one step earlier, summed over
the episode (the log's "surprise" column is its mean). A controller searched this way
drives where M predicts badly; collecting with it (01_generate_data.py --policy) shows M
what it has not learned yet.

--detours CHANCE (real env only) hands the wheel, in training episodes, to the exploration
walk for 20-80 steps at a time (01_generate_data.py's detours; each step outside one starts
one with that chance), at the same steps and with the same actions for every candidate on a
track: the car ends up off the road or turned, and candidates that drive back to the road
earn the tiles left. --patience ends training episodes without progress early. Checks and
evaluations run plain episodes.

--evaluate [N] runs the saved controller on N tracks never used in training (default
EVALUATION_EPISODES): the test tracks (--tracks test, the default), which report an agent
already chosen and must never choose between agents, or the validation tracks (--tracks
validation), on which every choice is made (which run to ship, which setting wins; the
search's checks use them too); worldmodels/env.py has the seed ranges. It says which set it
scored, and prints mean ± std, min and max, how many episodes ended with the lap done, and what
M's reward head predicted for the same episodes (what a dream would have paid for them).
--paired-with CSV compares it track by track with another agent's evaluation.csv on the same
tracks: the mean difference ± its standard error, the tracks each won, both agents' laps.
It writes checkpoints/evaluation.csv (a row per episode) and drive_best.gif,
drive_median.gif and drive_worst.gif (with stills, .png): the frame C saw, V's
reconstruction and M's one-step prediction side by side (worldmodels/viewer.py). With
--dream it also scores the controller in N dreams. Dream runs and dream evaluations write
checkpoints/dream_vs_real.gif (and stills): a dream decoded by V beside the real track it
started from.

--watch [N] shows the saved controller driving N tracks (of --tracks) live in a
window, beside what C sees, V's reconstruction and M's prediction (worldmodels/watch.py).

--ray [ADDRESS] drives the real episodes on a Ray cluster instead of this machine's cores
(worldmodels/parallel): V's and M's weights reach the workers once, through Ray's object
store, and the same seeds give the same search as here.

The phases of the search (set up, one generation, check and keep, finish) are in
worldmodels/search.py, the evaluation in worldmodels/evaluation.py. Every run records its
flags, paths and commit beside its log (controller_config.json, evaluation_config.json;
worldmodels/run_config.py).
"""

import argparse
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import (CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, controller_config, controller_inputs, load_controller,
                                     load_controller_for, load_members,
                                     load_vae_and_mdrnn)
from worldmodels.cli import (MAX_SEED, add_pool_flags, check_pool_flags, finite_float, pool_from_args, require_at_least,
                             require_folders, run_stage, seed_value)
from worldmodels.constants import MAX_EPISODE_STEPS
from worldmodels.controller import CONTROLLER_INPUTS
from worldmodels.env import TRACK_SETS
from worldmodels.dream import ZCharge, branch_starts, z_disagreement_threshold
from worldmodels.episodes import INITIAL_LATENTS_FILE, SKIP_FLAG, read_initial_latents, read_series_of
from worldmodels.evaluation import EVALUATION_FILE, evaluate_saved, write_dream_gif
from worldmodels.interrupt import Interrupted
from worldmodels.mdrnn import MDNRNN
from worldmodels.run_config import config_path, write_run_config
from worldmodels.search import ControllerSearch, SearchSettings
from worldmodels.vision import VisionModel
from worldmodels.watch import display_problem, watch
from worldmodels.worlds import Worlds

GENERATIONS = 1800  # the paper's full agent ran about 1800 generations
POPULATION = 64  # CMA-ES candidates per generation
EPISODES_PER_CANDIDATE = 16  # tracks each candidate drives; fitness is the mean return
SIGMA0 = 0.1  # initial CMA-ES step size (x0 = 0)
CHECK_EVERY = 25  # generations between checks of the CMA mean
CHECK_EPISODES = 100  # fixed tracks the CMA mean is checked on
MAX_STEPS = MAX_EPISODE_STEPS  # steps per episode at most
PATIENCE = 0  # end a training episode after this many steps without reward (0: never)
DETOURS = 0.0  # chance per step that the exploration walk takes the wheel in a training episode (0: never)
INPUTS = "zh"  # what C reads: "zh" [z, h] (the paper's full agent); "z" (its z-only agent); "zhc" [z, h, c] (and M's cell state)
SEED = 0  # CMA-ES sampling
WORKERS = 0  # parallel workers; 0: one process per core (with --ray: one per CPU of the cluster)
DREAM = False  # train in the dream (M) instead of the real env
GRADIENT = False  # in the dream: learn C by gradient ascent through M instead of CMA-ES
LEARNING_RATE = 0.02  # --gradient: Adam's step size
TRUNCATION = 50  # --gradient: steps between updates (truncated backpropagation through time)
TEMPERATURE = 1.15  # dream sampling temperature tau (the paper's best for its Doom dream)
MEMBERS = 1  # Ms the dream runs: M and members 1.. of 04_train_rnn.py --member (1: M alone)
DREAM_DROPOUT = True  # in a dream, Ms trained with dropout (04 --dropout) predict from a new mask of h every step
KEEP_BY = "dream"  # a dream search keeps the controller of its best check in: dream, or real (the validation tracks)
DISAGREEMENT = 0.0  # dream reward = mean of the Ms' rewards - DISAGREEMENT x their std (a charge for M's guesses)
BRANCH_STEPS = 0  # >0: dreams branch from real mid-episode states of SERIES_DIR and run this many steps (0: from first frames)
Z_DISAGREEMENT = 0.0  # dream reward also - Z_DISAGREEMENT x max(0, the Ms' disagreement about z_{t+1} - its threshold)
Z_QUANTILE = 0.9  # that threshold: this quantile of their disagreement along the recorded episodes
BRANCH_POINTS = 4096  # real states the branching dreams start from, drawn over all recorded steps
CURIOSITY = 0.0  # weight of M's surprise (summed NLL of each new z) added to a real episode's return (0: off)
SERIES_DIR = "data/series"  # where dreams find their real first latents
INIT_FROM = ""  # a controller.pt to start the search from ("" : the zero controller)
EVALUATION_EPISODES = 100  # --evaluate with no N: the paper's protocol, 100 tracks
TRACKS = "test"  # --evaluate and --watch drive the test tracks (report a chosen agent) or "validation" (choose)
GIF_STEPS = 300  # steps shown in the GIFs (6 s of driving)
FAST_RENDER = True  # worldmodels.envs.fast_car_racing: stock physics and rewards, 12x faster frames (--no-fast-render: stock)
DEVICE = "cpu"  # where dreams run M ("cuda": on the GPU; real episodes always act on the workers' CPUs)
FAST_ACTING = True  # with the fast renderer: 64x64 frames drawn directly, V's encoder in bfloat16 where the CPU has it
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
    parser.add_argument("--detours", type=finite_float, default=DETOURS,
                        help="chance per step that the exploration walk takes the wheel in a training episode (0: never)")
    parser.add_argument("--inputs", choices=CONTROLLER_INPUTS, default=INPUTS,
                        help="what C reads in a search: [z, h] (the paper's), z only, or [z, h, c] with M's cell state "
                             "(--evaluate and --watch read it from the saved controller)")
    parser.add_argument("--z-only", dest="inputs", action="store_const", const="z", help="the same as --inputs z")
    parser.add_argument("--seed", type=seed_value, default=SEED)
    parser.add_argument("--fast-render", action=argparse.BooleanOptionalAction, default=FAST_RENDER,
                        help="draw frames with the fast renderer (same physics and rewards); --no-fast-render draws them the stock way")
    parser.add_argument("--fast-acting", action=argparse.BooleanOptionalAction, default=FAST_ACTING,
                        help="with the fast renderer, draw V's 64x64 frames directly and encode them in bfloat16 where the "
                             "CPU has it (the same physics and rewards); --no-fast-acting: the float32 path on 96x96 frames")
    parser.add_argument("--dream", action=argparse.BooleanOptionalAction, default=DREAM, help="train inside M instead of the real env")
    parser.add_argument("--gradient", action="store_true", default=GRADIENT,
                        help="with --dream: learn C by gradient ascent on the dream's expected return, back through M, "
                             "instead of CMA-ES")
    parser.add_argument("--learning-rate", type=finite_float, default=LEARNING_RATE, help="--gradient: Adam's step size")
    parser.add_argument("--truncation", type=int, default=TRUNCATION,
                        help="--gradient: dream steps between updates of C (the gradient's path is cut there)")
    parser.add_argument("--temperature", type=finite_float, default=TEMPERATURE, help="dream sampling temperature")
    parser.add_argument("--keep-by", choices=("dream", "real"), default=KEEP_BY,
                        help="with --dream: keep the controller of the best dream check, or of the best real check (the "
                             "validation tracks choose the generation; C still learns from dreams alone)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=DEVICE,
                        help="where dreams run M and its members (real episodes act on the workers' CPUs, beside their envs)")
    parser.add_argument("--members", type=int, default=MEMBERS,
                        help="dream in M and ensemble members 1..MEMBERS-1 (mdrnn_member<k>.pt): z from one at random each step")
    parser.add_argument("--dream-dropout", action=argparse.BooleanOptionalAction, default=DREAM_DROPOUT,
                        help="dream with a new dropout mask every step in the Ms trained with dropout (04_train_rnn.py --dropout); "
                             "--no-dream-dropout: with the whole h")
    parser.add_argument("--disagreement", type=finite_float, default=DISAGREEMENT,
                        help="dream reward = the Ms' mean reward - DISAGREEMENT x their std")
    parser.add_argument("--z-disagreement", type=finite_float, default=Z_DISAGREEMENT,
                        help="dream reward also - Z_DISAGREEMENT x max(0, the Ms' disagreement about the next z - threshold)")
    parser.add_argument("--z-quantile", type=finite_float, default=Z_QUANTILE,
                        help="the threshold: this quantile of the Ms' z disagreement along the recorded episodes of --series-dir")
    parser.add_argument("--branch-steps", type=int, default=BRANCH_STEPS,
                        help="with --dream: every dream starts at a real state in the middle of a recorded episode of "
                             "--series-dir (V's z and M's h there) and runs this many steps (0: dreams start at first frames)")
    parser.add_argument("--curiosity", type=finite_float, default=CURIOSITY,
                        help="in the real env, rank candidates by return + CURIOSITY x M's surprise (its NLL of every new z)")
    parser.add_argument("--series-dir", default=SERIES_DIR, help="folder with initial_latents.npz (for --dream)")
    parser.add_argument(SKIP_FLAG, action="store_true",
                        help="with --branch-steps or --z-disagreement: leave out series files that cannot be read, with a warning")
    parser.add_argument("--gif-steps", type=int, default=GIF_STEPS, help="steps shown in the driving and dream GIFs (0: none)")
    parser.add_argument("--init-from", default=INIT_FROM,
                        help="controller.pt whose parameters start the search (one reading less than --inputs is widened with zeros)")
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="start a new search even if a saved one exists")
    parser.add_argument("--evaluate", type=int, nargs="?", const=EVALUATION_EPISODES, metavar="N", default=None,
                        help=f"only evaluate the saved controller on N fresh tracks (N defaults to {EVALUATION_EPISODES})")
    parser.add_argument("--watch", type=int, nargs="?", const=1, metavar="N", default=None,
                        help="only watch the saved controller drive N tracks (default 1) live in a window, beside what V and M see")
    parser.add_argument("--tracks", choices=sorted(TRACK_SETS), default=TRACKS,
                        help="--evaluate and --watch drive the test tracks (only to report an agent already chosen) or the "
                             "validation tracks (to choose: which run, which setting)")
    parser.add_argument("--paired-with", type=Path, default=None, metavar="CSV",
                        help="with --evaluate: another agent's evaluation.csv on the same tracks, compared track by track "
                             "(the paired difference and its standard error)")
    parser.add_argument("--first-track", type=seed_value, default=None,
                        help="track seed of the first evaluation episode (default: the first of --tracks)")
    add_pool_flags(parser, WORKERS)
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "generations", "episodes_per_candidate", "check_every", "check_episodes", "max_steps")
    check_pool_flags(parser, args)
    require_at_least(parser, args, 2, "population")
    if args.evaluate is not None:
        require_at_least(parser, args, 1, "evaluate")
    if args.first_track is None:
        args.first_track = TRACK_SETS[args.tracks]
    if args.first_track + max(args.evaluate or 0, args.watch or 0) > MAX_SEED:
        parser.error(f"--first-track + the episodes must stay below {MAX_SEED}")
    if args.paired_with is not None and args.evaluate is None:
        parser.error("--paired-with compares an evaluation with another: add --evaluate")
    if args.watch is not None:
        require_at_least(parser, args, 1, "watch")
        if args.evaluate is not None:
            parser.error("--watch and --evaluate are two runs: watch, or evaluate (which writes the GIFs)")
    if args.sigma0 <= 0 or args.temperature <= 0 or args.patience < 0 or args.gif_steps < 0:
        parser.error("--sigma0 and --temperature must be positive; --patience and --gif-steps non-negative")
    if not 0 <= args.detours <= 1 or (args.detours and args.dream):
        parser.error(f"--detours is a chance per step, from 0 to 1, and drives real tracks (drop --dream), got {args.detours}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here")
    if args.branch_steps < 0 or (args.branch_steps and not args.dream):
        parser.error("--branch-steps must be non-negative and shapes dreams: add --dream")
    if args.gradient and not args.dream:
        parser.error("--gradient learns through M's dream: add --dream")
    if args.learning_rate <= 0 or args.truncation < 1:
        parser.error("--learning-rate must be positive and --truncation at least 1")
    if args.curiosity and args.dream:
        parser.error("--curiosity rewards M's surprise at real frames; a dream has none (drop --dream or --curiosity)")
    require_at_least(parser, args, 1, "members")
    if args.members > 1 and not args.dream:
        parser.error("--members are Ms to dream in: add --dream")
    if args.disagreement < 0 or (args.disagreement and args.members < 2):
        parser.error("--disagreement must be non-negative and needs --members 2 or more")
    if args.z_disagreement < 0 or (args.z_disagreement and args.members < 2):
        parser.error("--z-disagreement must be non-negative and needs --members 2 or more")
    if not 0 <= args.z_quantile <= 1:
        parser.error(f"--z-quantile is a quantile, from 0 to 1, got {args.z_quantile}")
    require_folders(parser, args, "checkpoint_dir", "series_dir")
    return args


def watch_saved(args: argparse.Namespace, vae: VisionModel, mdrnn: MDNRNN, controller_path: str, config: dict) -> None:
    """--watch: the saved controller live in a window, or one line saying why there is none."""
    params = load_controller(controller_path, config)["params"].numpy()
    if (problem := display_problem()) is not None:
        print(f"{problem}: no window to watch in; --evaluate writes drive_best.gif, drive_median.gif and "
              f"drive_worst.gif in {args.checkpoint_dir} instead")
        return
    tracks = [args.first_track + i for i in range(args.watch)]
    watch(vae, mdrnn, params, tracks, args.max_steps, controller_inputs(config), args.fast_render)


def dream_inputs(args: argparse.Namespace, directory: Path, vae: VisionModel, mdrnn: MDNRNN, vae_id: str,
                 ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]] | None, list[MDNRNN], ZCharge | None]:
    """What the dreams need: where they start (real first latents, or with --branch-steps real
    mid-episode states and each M's (h, c) there), the ensemble members, and the z charge
    (its threshold set by the recorded episodes)."""
    members, starts, start_states, z_charge = load_members(directory, args.members, vae), None, None, None
    episodes = read_series_of(args.series_dir, vae_id, args.skip_bad_files) if args.branch_steps or args.z_disagreement else None
    if args.branch_steps:
        starts, start_states = branch_starts([mdrnn, *members], episodes, BRANCH_POINTS, args.seed)
    else:
        starts = read_initial_latents(Path(args.series_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, vae_id)["mu"].astype(np.float32)
    if args.z_disagreement:
        z_charge = ZCharge(args.z_disagreement, z_disagreement_threshold([mdrnn, *members], episodes, args.z_quantile))
    return starts, start_states, members, z_charge


def main(argv=None) -> None:
    args = parse_args(argv)
    directory = Path(args.checkpoint_dir)
    paths = {name: str(directory / file) for name, file in
             (("vae", VAE_FILE), ("mdrnn", MDRNN_FILE), ("controller", CONTROLLER_FILE))}
    vae, mdrnn = load_vae_and_mdrnn(paths["vae"], paths["mdrnn"])  # fails early with a clear message
    config = controller_config(vae, mdrnn, args.inputs)  # C belongs with this V and M
    if (args.evaluate is not None or args.watch is not None) and Path(paths["controller"]).exists():
        config = load_controller_for(paths["controller"], vae, mdrnn)[1]  # what the saved C reads, whatever --inputs says
    if args.watch is not None:  # writes nothing, so a read-only folder (pretrained/) will do
        watch_saved(args, vae, mdrnn, paths["controller"], config)
        return
    prepare_output(directory, needed_bytes=2**20)  # a controller, the search state and the log
    starts, start_states, members, z_charge = None, None, [], None
    if args.dream:
        starts, start_states, members, z_charge = dream_inputs(args, directory, vae, mdrnn, config["vae"])
    dream_dropout = args.dream and args.dream_dropout and any(model.dropout for model in (mdrnn, *members))

    with pool_from_args(args) as pool:
        worlds = Worlds(pool, vae, mdrnn, args.max_steps, controller_inputs(config), args.fast_render,
                        args.temperature, starts, members, args.disagreement, dream_dropout,
                        fast_acting=args.fast_acting and args.fast_render,  # the stock renderer is the stock path throughout
                        start_states=start_states, dream_steps=args.branch_steps, z_charge=z_charge, device=args.device)
        if args.evaluate is not None:
            write_run_config(config_path(directory / EVALUATION_FILE), args, "05_train_controller.py")
            evaluate_saved(worlds, directory, paths["controller"], config, args.evaluate, args.first_track, args.gif_steps,
                           args.paired_with)
            return
        search = ControllerSearch(SearchSettings(**{f.name: getattr(args, f.name) for f in fields(SearchSettings)}),
                                  worlds, directory, config)
        write_run_config(config_path(search.log_path), args, "05_train_controller.py")
        print(search.describe(pool.describe()))
        search.run()
    search.finish()
    if args.dream:
        try:
            write_dream_gif(worlds, directory, paths["controller"], config, TRACK_SETS["validation"], args.gif_steps)
        except Interrupted as stop:
            raise Interrupted(f"the search is done and saved, but {stop}") from None
    print("next: python 05_train_controller.py --evaluate")


if __name__ == "__main__":
    run_stage(main)
