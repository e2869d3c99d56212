"""How well Ms predict held-out episodes, side by side: the z NLL (nats per latent
dimension) on their first 100 steps (where every dream starts) and on whole episodes, the
reward MSE, from M's zero state with the same z samples for every M (stage 04's held-out
scoring). Episodes are the held-out share of --series-dir, split as stage 04 splits them.
Usage:

    python benchmarks/m_heldout.py --series-dir data/small/series --checkpoints checkpoints/a/mdrnn.pt checkpoints/b/mdrnn.pt
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import load_model  # noqa: E402
from worldmodels.cli import finite_float, load_stage_script, run_stage  # noqa: E402
from worldmodels.data import SeriesEpisodes, split_episodes  # noqa: E402
from worldmodels.episodes import read_series, require_episodes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series-dir", default="data/small/series")
    parser.add_argument("--checkpoints", nargs="+", required=True, help="mdrnn.pt files")
    parser.add_argument("--held-out-fraction", type=finite_float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="z samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, held_out = split_episodes(require_episodes(args.series_dir, "03_generate_rnn_data.py"), args.held_out_fraction)
    data = SeriesEpisodes([read_series(path) for path in held_out])
    evaluate = load_stage_script("04_train_rnn.py").evaluate
    print(f"{len(held_out)} held-out episodes of {args.series_dir} ({data.steps} steps)")
    print("| M | z NLL, steps 0-99 | z NLL, whole episodes | reward MSE |\n|---|---|---|---|")
    for path in args.checkpoints:
        scores, _ = evaluate(load_model(path, "mdrnn", z_size=data.z_size), data, args.seed, torch.device("cpu"))
        print(f"| {path} | {scores['nll_first_100']:.3f} | {scores['nll']:.3f} | {scores['reward']:.3f} |")


if __name__ == "__main__":
    run_stage(main)
