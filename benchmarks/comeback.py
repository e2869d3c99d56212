"""Does C come back to the road? A saved agent on the same training tracks, driven plainly
and with detours (05 --detours: the exploration walk takes the wheel for 20-80 steps at a
time, with CHANCE per step), side by side: mean ± std, laps, and the steps each episode ends
after its last new tile (hundreds: the car stopped finding tiles). Each setting runs in a
worker of its own, one torch thread each. Usage:

    python benchmarks/comeback.py --checkpoint-dir pretrained --detours 0.0025 --tracks 16
"""

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, controller_inputs, load_controller_for  # noqa: E402
from worldmodels.checkpoints import load_vae_and_mdrnn  # noqa: E402
from worldmodels.cli import finite_float, run_stage  # noqa: E402
from worldmodels.env import TRAIN_SEED_BASE  # noqa: E402
from worldmodels.evaluation import summary  # noqa: E402
from worldmodels.rollout import TrainingEpisodes, run_agent_episodes  # noqa: E402


def drive(folder: str, tracks: int, detours: float) -> str:
    torch.set_num_threads(1)
    vae, mdrnn = load_vae_and_mdrnn(Path(folder) / VAE_FILE, Path(folder) / MDRNN_FILE)
    controller, config = load_controller_for(Path(folder) / CONTROLLER_FILE, vae, mdrnn)
    params = np.repeat(controller["params"].numpy()[None], tracks, axis=0)
    seeds = [TRAIN_SEED_BASE + i for i in range(tracks)]
    results = run_agent_episodes(vae, mdrnn, params, seeds, 1000, TrainingEpisodes(detours=detours), controller_inputs(config),
                                 fast_render=True, fast_acting=True)
    return (f"detours {detours}: {summary(results.returns)}; {int(results.laps.sum())} of {tracks} laps; steps after the last "
            f"new tile: {sorted(results.steps_since_last_tile.tolist())}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="pretrained")
    parser.add_argument("--detours", type=finite_float, default=0.0025, help="chance per step of a detour")
    parser.add_argument("--tracks", type=int, default=16, help="training tracks, from the first training seed")
    args = parser.parse_args(argv)
    print(f"{args.checkpoint_dir} on training tracks {TRAIN_SEED_BASE}..{TRAIN_SEED_BASE + args.tracks - 1}, fast renderer and acting")
    with ProcessPoolExecutor(2) as pool:
        for line in pool.map(drive, [args.checkpoint_dir] * 2, [args.tracks] * 2, [0.0, args.detours]):
            print(line)


if __name__ == "__main__":
    run_stage(main)
