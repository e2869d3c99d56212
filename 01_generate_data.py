"""Stage 01: collect CarRacing-v3 episodes with the exploration policy.

Writes one file per episode, data/rollout/ep<seed>.npz (format: worldmodels/episodes.py).
Episode i runs on track seed i with a policy seeded by i, so any episode can be
regenerated alone. A re-run writes only the episodes that are missing (Ctrl-C lets the
episodes in progress finish and be written, then stops).
"""

import argparse
from functools import partial

from worldmodels.atomic import prepare_output
from worldmodels.cli import require_at_least, require_folders, run_stage
from worldmodels.env import DATA_SEED_BASE
from worldmodels.episodes import episode_id, list_episodes
from worldmodels.frames import FRAME_SIZE
from worldmodels.interrupt import Interrupted
from worldmodels.parallel import WorkerPool, default_workers
from worldmodels.rollout import write_exploration_episode

EPISODES = 2000  # the paper's 10,000 for CarRacing was cut to 2000 in its code; 2000 here
MAX_STEPS = 1000  # CarRacing-v3's time limit
OUT_DIR = "data/rollout"  # one .npz per episode
WORKERS = default_workers()  # one process per core
FAST_RENDER = True  # worldmodels.fast_env: stock physics and rewards, 12x faster frames (--no-fast-render: stock)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=EPISODES, help="episodes in the dataset")
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="steps per episode at most")
    parser.add_argument("--out-dir", default=OUT_DIR)
    parser.add_argument("--workers", type=int, default=WORKERS, help="parallel processes")
    parser.add_argument("--fast-render", action=argparse.BooleanOptionalAction, default=FAST_RENDER,
                        help="draw frames with the fast renderer (same physics and rewards); --no-fast-render draws them the stock way")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "episodes", "max_steps", "workers")
    require_folders(parser, args, "out_dir")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out_dir = prepare_output(args.out_dir, needed_bytes=args.max_steps * FRAME_SIZE * FRAME_SIZE * 3)  # an episode, uncompressed
    existing = {path.stem for path in list_episodes(out_dir)}
    seeds = [DATA_SEED_BASE + i for i in range(args.episodes) if episode_id(DATA_SEED_BASE + i) not in existing]
    print(f"{len(existing)} episodes already in {out_dir}; collecting {len(seeds)} more with {args.workers} workers")
    with WorkerPool(args.workers) as pool:
        try:
            steps = pool.map(partial(write_exploration_episode, out_dir=str(out_dir), max_steps=args.max_steps,
                                     fast_render=args.fast_render), seeds, desc="episodes")
        except Interrupted:
            raise Interrupted(f"{len(list_episodes(out_dir))} of {args.episodes} episodes are in {out_dir}; "
                              "re-run to collect the rest") from None
    print(f"wrote {len(seeds)} episodes ({sum(steps)} frames) to {out_dir}/")
    print("next: python 02_train_vae.py")


if __name__ == "__main__":
    run_stage(main)
