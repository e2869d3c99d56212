"""Dream steps per second: a batch of dreams inside M, each with its own controller.

Runs ``run_dream_episodes`` (M step, temperature sampling, reward and done heads, C) for a
batch of random controllers from real first latents, with all torch threads. Counts only
the steps of dreams that have not ended. Usage:

    python benchmarks/dream_speed.py --checkpoint-dir checkpoints/small --series-dir data/small/series --batch 1024
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import MDRNN_FILE, load_model  # noqa: E402
from worldmodels.cli import finite_float  # noqa: E402
from worldmodels.controller import parameter_count  # noqa: E402
from worldmodels.dream import run_dream_episodes  # noqa: E402
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", default="checkpoints/small")
    parser.add_argument("--series-dir", default="data/small/series")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--temperature", type=finite_float, default=1.15)
    args = parser.parse_args()
    mdrnn = load_model(Path(args.checkpoint_dir) / MDRNN_FILE, "mdrnn")
    starts = read_initial_latents(Path(args.series_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, mdrnn.made_from.get("vae"))["mu"].astype(np.float32)
    rng = np.random.default_rng(0)
    z0 = starts[rng.integers(len(starts), size=args.batch)]
    params = rng.normal(0, 0.1, (args.batch, parameter_count(mdrnn.z_size + mdrnn.hidden_size))).astype(np.float32)
    started = time.perf_counter()
    results = run_dream_episodes(mdrnn, params, z0, list(range(args.batch)), args.temperature, args.steps)
    elapsed = time.perf_counter() - started
    print(f"batch {args.batch}, up to {args.steps} steps, tau {args.temperature}, {torch.get_num_threads()} torch threads: "
          f"{results.steps.sum() / elapsed:,.0f} dream steps/s ({results.steps.sum()} steps in {elapsed:.1f} s; "
          f"mean dream length {results.steps.mean():.0f})")


if __name__ == "__main__":
    main()
