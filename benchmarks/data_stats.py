"""What a folder of rollouts holds, grouped by what drove each episode (its recorded source):
episodes, steps, return, new tiles reached per episode, the share of frames with road under
the car, the share of steps at full brake, the car's true speed (median and 90th percentile
over steps after the zoom-in, where the files record it), and (with --mdrnn) M's z NLL on those episodes,
i.e. how new they are to that M. Usage:

    python benchmarks/data_stats.py --rollout-dir data/iterative/rollout \\
        [--series-dir data/iterative/round2/series --mdrnn checkpoints/iterative/round1/mdrnn.pt]
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import load_model  # noqa: E402
from worldmodels.cli import load_stage_script, run_stage  # noqa: E402
from worldmodels.data import SeriesEpisodes  # noqa: E402
from worldmodels.errors import DataError  # noqa: E402
from worldmodels.episodes import read_rollout, read_rollout_source, read_rollout_truth, read_series, require_episodes, rollout_records_truth  # noqa: E402
from worldmodels.mdrnn import TILE_REWARD  # noqa: E402

# the 64x64 frame's pixels just ahead of the car (rows 46-49, columns 30-33): grey road or green grass
UNDER_CAR = (slice(46, 50), slice(30, 34))
ZOOM_STEPS = 60  # the first second's zoom-in, while the car stands at the start: left out of the speeds


def on_road(frames: np.ndarray) -> np.ndarray:
    """frames [T, 64, 64, 3] uint8 -> bool [T]: the pixels ahead of the car are grey (road,
    kerb) rather than green (grass), whose green channel is about 100 above its red."""
    patch = frames[:, UNDER_CAR[0], UNDER_CAR[1]].astype(np.int16)
    return (patch[..., 1] - patch[..., 0]).mean(axis=(1, 2)) < 50


def recorded_speeds(path: Path) -> np.ndarray:
    """The car's speed at each step after the zoom-in, or nothing for files that lack it."""
    return read_rollout_truth(path)["speed"][ZOOM_STEPS:] if rollout_records_truth(path) else np.zeros(0, np.float32)


def source_name(source: str) -> str:
    """An episode's recorded source, shortened to what drove it (the walk or a controller)."""
    return source.split(" (V ")[0]


def m_nll(mdrnn: torch.nn.Module, series_files: list[Path]) -> float:
    """M's z NLL (nats per latent dimension) on these whole episodes, scored as stage 04
    scores its held-out episodes."""
    data = SeriesEpisodes([read_series(path) for path in series_files])
    if data.z_size != mdrnn.z_size:
        raise DataError(f"{series_files[0].parent}: latents of size {data.z_size}, but M takes {mdrnn.z_size}; pass the series "
                        "of the V that M was trained on")
    scores, _ = load_stage_script("04_train_rnn.py").evaluate(mdrnn, data, 0, torch.device("cpu"))
    return scores["nll"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollout-dir", required=True)
    parser.add_argument("--series-dir", help="the same episodes encoded (for --mdrnn)")
    parser.add_argument("--mdrnn", help="an mdrnn.pt trained on the series' V: its z NLL on each group")
    args = parser.parse_args()
    torch.set_num_threads(1)
    groups = defaultdict(list)
    for path in tqdm(require_episodes(args.rollout_dir, "01_generate_data.py"), desc="episodes"):
        episode = read_rollout(path)
        reward = episode["reward"]
        groups[source_name(read_rollout_source(path))].append({
            "path": path, "steps": len(reward), "return": reward.sum(), "tiles": int((reward > TILE_REWARD).sum()),
            "road": on_road(episode["obs"]).mean(), "braking": (episode["action"][:, 2] > 0.9).mean(), "speed": recorded_speeds(path)})
    mdrnn = load_model(args.mdrnn, "mdrnn") if args.mdrnn else None
    header = "| source | episodes | steps | return | tiles per episode | frames on the road | steps at full brake | speed p50, p90 |"
    print(header + (" M's z NLL |" if args.mdrnn else "") + "\n" + "|---" * (header.count("|") - 1 + bool(args.mdrnn)) + "|")
    for source, rows in groups.items():
        stat = lambda key: np.array([row[key] for row in rows], dtype=np.float64)
        speeds = np.concatenate([row["speed"] for row in rows])
        speed = f"{np.percentile(speeds, 50):.0f}, {np.percentile(speeds, 90):.0f}" if len(speeds) else "not recorded"
        line = (f"| {source} | {len(rows)} | {int(stat('steps').sum()):,} | {stat('return').mean():.1f} ± {stat('return').std():.1f} | "
                f"{stat('tiles').mean():.1f} ± {stat('tiles').std():.1f} | {stat('road').mean():.1%} | {stat('braking').mean():.1%} | "
                f"{speed} |")
        if mdrnn is not None:
            line += f" {m_nll(mdrnn, [Path(args.series_dir) / row['path'].name for row in rows]):.3f} |"
        print(line)


if __name__ == "__main__":
    run_stage(main)
