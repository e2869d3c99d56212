"""Stage 01: collect CarRacing-v3 episodes with the exploration policy, or with a saved agent.

Writes one file per episode, data/rollout/ep<seed>.npz (format: worldmodels/episodes.py),
which records what drove it. Episode i runs on track seed FIRST_SEED + i with a policy
seeded by that seed, so any episode can be regenerated alone (rounds of collection take
disjoint FIRST_SEEDs and add to one folder). A re-run writes only the episodes that are
missing (Ctrl-C lets the episodes in progress finish and be written, then stops).

--policy DIR drives with the V, M and C of DIR instead of the exploration walk; each
episode adds Gaussian noise of std POLICY_NOISE to C's parameters, drawn from its seed
(the way CMA-ES samples candidates around its mean: the data covers where the search's
candidates drive, and each episode drives consistently). --detours CHANCE hands the wheel to
the exploration walk for 20-80 steps at a time, starting with that chance each step: a
driver that keeps to the road shows M the road under the car whatever C does, and the
detours show it what other actions do from the same states, and how C comes back.

--frame chooses the frame V will see (worldmodels/frames.py): "paper", the paper's, with the
indicator bar cropped (the default; the world only), or "full", the bar kept with the
score's digits blacked out (the car's speed, ABS, steering and gyroscope gauges, never its
return). Every file records its kind; V is trained on one kind and every later stage prepares
frames in its V's kind. An agent (--policy) collects in its own V's kind unless --frame says
otherwise: it always drives on what its V sees, and the files hold --frame's kind (a paper-frame
driver's episodes on the full frame, to train a full-frame V); a folder holds one kind.

--ray [ADDRESS] collects on a Ray cluster instead of this machine's cores (worldmodels/parallel):
workers return each episode's file to this process, which writes it as it arrives, so
they need no shared disk; the same seeds give the same files.
"""

import argparse
from contextlib import suppress
from functools import partial
from pathlib import Path

from worldmodels.atomic import prepare_output, save_bytes
from worldmodels.cli import (add_pool_flags, check_pool_flags, finite_float, pool_from_args, require_at_least, require_folders, run_stage,
                             seed_value)
from worldmodels.env import DATA_SEED_BASE, TRAIN_SEED_BASE
from worldmodels.episodes import episode_id, frame_kind_of, list_episodes, read_rollout_frame_kind
from worldmodels.errors import DataError
from worldmodels.frames import FRAME_KINDS, FRAME_SIZE
from worldmodels.interrupt import Interrupted
from worldmodels.rollout import EpisodeFile, collect_episode_file, load_agent_policy
from worldmodels.run_config import write_run_config

EPISODES = 2000  # the paper's 10,000 for CarRacing was cut to 2000 in its code; 2000 here
MAX_STEPS = 1000  # CarRacing-v3's time limit
OUT_DIR = "data/rollout"  # one .npz per episode
WORKERS = 0  # parallel workers; 0: one process per core (with --ray: one per CPU of the cluster)
FAST_RENDER = True  # worldmodels.envs.fast_car_racing: stock physics and rewards, 12x faster frames (--no-fast-render: stock)
FIRST_SEED = DATA_SEED_BASE  # track seed of episode 0 (and its file name)
POLICY = ""  # a folder with vae.pt, mdrnn.pt and controller.pt to drive with ("": the exploration walk)
POLICY_NOISE = 0.1  # std of the noise on C's parameters, per episode (CMA-ES's starting step size)
DETOURS = 0.0  # chance per step that the exploration walk takes the wheel from C for a while (0: never)
FRAME = "paper"  # the frame V will see: "paper" (the indicator bar cropped) or "full" (the bar kept, the score blacked out)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=EPISODES, help="episodes in the dataset")
    parser.add_argument("--max-steps", type=int, default=MAX_STEPS, help="steps per episode at most")
    parser.add_argument("--out-dir", default=OUT_DIR)
    parser.add_argument("--fast-render", action=argparse.BooleanOptionalAction, default=FAST_RENDER,
                        help="draw frames with the fast renderer (same physics and rewards); --no-fast-render draws them the stock way")
    parser.add_argument("--first-seed", type=seed_value, default=FIRST_SEED, help="track seed of the first episode")
    parser.add_argument("--policy", default=POLICY, help="folder of the V, M and C to drive with (default: the exploration walk)")
    parser.add_argument("--policy-noise", type=finite_float, default=POLICY_NOISE, help="std of the noise on C's parameters")
    parser.add_argument("--detours", type=finite_float, default=DETOURS,
                        help="with --policy: chance per step that the exploration walk drives for 20-80 steps")
    parser.add_argument("--frame", choices=FRAME_KINDS, default=None,
                        help=f"the frame V will see (default: {FRAME}; with --policy, the agent's own)")
    add_pool_flags(parser, WORKERS)
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "episodes", "max_steps")
    check_pool_flags(parser, args)
    require_at_least(parser, args, 0, "first_seed", "policy_noise", "detours")
    if args.detours > 1:
        parser.error(f"--detours is a chance per step, from 0 to 1, got {args.detours}")
    if args.detours and not args.policy:
        parser.error("--detours needs --policy (the exploration walk is all detour)")
    if args.first_seed + args.episodes > TRAIN_SEED_BASE:
        parser.error(f"--first-seed + --episodes must stay below {TRAIN_SEED_BASE} (the seeds above are other stages' tracks)")
    require_folders(parser, args, "out_dir", "policy")
    return args


def collection_frame_kind(args: argparse.Namespace, agent_kind: str | None, out_dir: Path) -> str:
    """The kind of frame to collect: --frame, else the agent's, else FRAME; refused in one
    line where it differs from the episodes already in the folder."""
    kind = args.frame or agent_kind or FRAME
    kinds = {}
    for path in list_episodes(out_dir):
        with suppress(DataError):  # an unreadable file is stage 02's to report
            kinds[path] = read_rollout_frame_kind(path)
    if kinds and (there := frame_kind_of(kinds, out_dir)) != kind:
        raise DataError(f"{out_dir}: holds episodes of {there} frames, these would be {kind}; V learns one kind: "
                        "collect into another --out-dir")
    return kind


def main(argv=None) -> None:
    args = parse_args(argv)
    out_dir = prepare_output(args.out_dir, needed_bytes=args.max_steps * FRAME_SIZE * FRAME_SIZE * 3)  # an episode, uncompressed
    wanted = {episode_id(args.first_seed + i): args.first_seed + i for i in range(args.episodes)}
    existing = {path.stem for path in list_episodes(out_dir)}
    seeds = [seed for name, seed in wanted.items() if name not in existing]

    def write(episode: EpisodeFile) -> int:  # here, in this process, as each episode arrives: workers need no shared disk
        save_bytes(out_dir / episode.name, episode.data)
        return episode.steps

    with pool_from_args(args) as pool:
        # fails early, in one line
        agent = load_agent_policy(args.policy, args.policy_noise, pool, args.detours) if args.policy else None
        args.frame = collection_frame_kind(args, agent.frame_kind if agent else None, out_dir)
        write_run_config(out_dir / "collect_config.json", args, "01_generate_data.py")
        print(f"{len(wanted) - len(seeds)} of these {args.episodes} episodes already in {out_dir} ({len(existing)} episodes in "
              f"all); collecting {len(seeds)} with {agent.source if agent else 'the exploration walk'}, {args.frame} frames, "
              f"{pool.describe()}")
        try:
            steps = pool.map(partial(collect_episode_file, max_steps=args.max_steps, fast_render=args.fast_render, agent=agent,
                                     frame_kind=args.frame), seeds, desc="episodes", on_result=write)
        except Interrupted:
            done = len(wanted.keys() & {path.stem for path in list_episodes(out_dir)})
            raise Interrupted(f"{done} of {args.episodes} episodes are in {out_dir}; re-run to collect the rest") from None
    print(f"wrote {len(seeds)} episodes ({sum(steps)} frames) to {out_dir}/")
    print("next: python 02_train_vae.py")


if __name__ == "__main__":
    run_stage(main)
