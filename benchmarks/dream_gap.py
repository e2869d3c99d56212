"""How honest is a dream? For fixed drivers, three returns side by side:

- real: the driver on real tracks;
- M on the real episodes: the summed rewards M's reward head predicted along those same
  real episodes (teacher forced: M sees the real z's). A gap here is the reward head's error;
- dream: the driver in dreams from real first latents, at each temperature. A further gap
  is M's closed-loop dynamics, which the driver can steer into states that pay.

Drivers: full brake (the car stays at the start), the zero controller (straight, half
gas), full gas, and any saved controllers (--controllers; each must fit this V and M),
also with their gas bias moved by each of --gas-offsets.
Usage:

    python benchmarks/dream_gap.py --checkpoint-dir checkpoints/dream --series-dir data/dream/series \\
        --controllers checkpoints/dream/tau1.0/controller.pt
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import MDRNN_FILE, VAE_FILE, load_checkpoint, load_vae_and_mdrnn  # noqa: E402
from worldmodels.cli import finite_float, run_stage  # noqa: E402
from worldmodels.controller import parameter_count  # noqa: E402
from worldmodels.dream import first_latents, run_dream_episodes  # noqa: E402
from worldmodels.env import VALIDATION_SEED_BASE  # noqa: E402
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents  # noqa: E402
from worldmodels.rollout import run_agent_episodes  # noqa: E402

SATURATED = 5.0  # a raw action this large squashes to (almost) the bound: tanh(5) = 0.9999


def fixed_drivers(input_size: int) -> dict[str, np.ndarray]:
    """Constant controllers: W = 0 and a bias giving (steer, gas, brake)."""
    drivers = {}
    for name, bias in (("full brake", (0, -SATURATED, SATURATED)), ("zero controller", (0, 0, 0)),
                       ("full gas", (0, SATURATED, -SATURATED))):
        params = np.zeros(parameter_count(input_size), dtype=np.float32)
        params[-3:] = bias
        drivers[name] = params
    return drivers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="checkpoints/dream")
    parser.add_argument("--series-dir", default="data/dream/series")
    parser.add_argument("--controllers", nargs="*", default=[])
    parser.add_argument("--gas-offsets", type=finite_float, nargs="*", default=[],
                        help="also each controller with this added to its gas bias: does the dream pay for speed as reality does?")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--dreams", type=int, default=32)
    parser.add_argument("--temperatures", type=finite_float, nargs="+", default=[0.5, 1.0, 1.15, 1.3])
    parser.add_argument("--dream-dropout", action=argparse.BooleanOptionalAction, default=True,
                        help="dream with a new dropout mask every step if M was trained with dropout (as 05 does)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # fixed drivers in lockstep batches; one core is plenty
    directory = Path(args.checkpoint_dir)
    vae, mdrnn = load_vae_and_mdrnn(str(directory / VAE_FILE), str(directory / MDRNN_FILE))
    starts = read_initial_latents(Path(args.series_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, mdrnn.made_from.get("vae"))["mu"].astype(np.float32)
    drivers = fixed_drivers(vae.z_size + mdrnn.hidden_size)
    for path in args.controllers:
        drivers[path] = load_checkpoint(path, "controller", "05_train_controller.py")["params"].numpy()
        for offset in args.gas_offsets:
            moved = drivers[path].copy()
            moved[-2] += offset  # b_c's gas entry (the parameters end with b_c = steer, gas, brake)
            drivers[f"{path}, gas bias {offset:+g}"] = moved

    track_seeds = [VALIDATION_SEED_BASE + i for i in range(args.tracks)]
    dream_seeds = list(range(args.dreams))
    print(f"V and M from {directory}; {args.tracks} real tracks (seeds {track_seeds[0]}..), {args.dreams} dreams per temperature")
    print("| driver | real | M on the real episodes | " + " | ".join(f"dream, tau {t}" for t in args.temperatures) + " |")
    print("|---" * (3 + len(args.temperatures)) + "|")
    for name, params in drivers.items():
        real = run_agent_episodes(vae, mdrnn, np.repeat(params[None], args.tracks, 0), track_seeds, 1000, fast_render=True)
        cells = [f"{real.returns.mean():.1f} ± {real.returns.std():.1f}",
                 f"{real.predicted_returns.mean():.1f} ± {real.predicted_returns.std():.1f}"]
        for temperature in args.temperatures:
            dream = run_dream_episodes(mdrnn, np.repeat(params[None], args.dreams, 0), first_latents(starts, dream_seeds),
                                       dream_seeds, temperature, 1000, dropout=args.dream_dropout).returns
            cells.append(f"{dream.mean():.1f} ± {dream.std():.1f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    run_stage(main)
