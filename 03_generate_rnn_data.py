"""Stage 03: encode every rollout with V into data/series (the MDN-RNN's training data).

For each data/rollout/<id>.npz writes data/series/<id>.npz with V's mu and logvar per
frame (float16) and the episode's actions, rewards and done flags, skipping episodes
already encoded; then data/series/initial_latents.npz with every episode's first latent
(dreams start from these).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.checkpoints import VAE_FILE, default_device, load_model
from worldmodels.cli import require_at_least, run_stage
from worldmodels.episodes import (
    INITIAL_LATENTS_FILE,
    list_episodes,
    read_rollout,
    read_series,
    require_episodes,
    write_initial_latents,
    write_series,
)
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.vae import ConvVAE

BATCH_SIZE = 1000  # frames encoded per forward pass
ROLLOUT_DIR = "data/rollout"
SERIES_DIR = "data/series"
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--rollout-dir", default=ROLLOUT_DIR)
    parser.add_argument("--series-dir", default=SERIES_DIR)
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--overwrite", action="store_true", help="re-encode episodes already in --series-dir")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "batch_size")
    return args


@torch.no_grad()
def encode_frames(vae: ConvVAE, frames: np.ndarray, batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T, 64, 64, 3] -> mu, logvar float32 [T, Z]."""
    mus, logvars = [], []
    for start in range(0, len(frames), batch_size):
        x = torch.from_numpy(frames_to_tensor_layout(frames[start : start + batch_size])).to(device)
        mu, logvar = vae.encode(x)
        mus.append(mu.cpu().numpy())
        logvars.append(logvar.cpu().numpy())
    return np.concatenate(mus), np.concatenate(logvars)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = default_device()
    rollouts = require_episodes(args.rollout_dir, "01_generate_data.py")
    vae = load_model(Path(args.checkpoint_dir) / VAE_FILE, "vae").to(device)
    series_dir = Path(args.series_dir)
    series_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in rollouts if args.overwrite or not (series_dir / p.name).exists()]
    print(f"encoding {len(todo)} of {len(rollouts)} episodes ({len(rollouts) - len(todo)} already in {series_dir})")
    for path in tqdm(todo, desc="episodes", dynamic_ncols=True):
        episode = read_rollout(path)
        mu, logvar = encode_frames(vae, episode["obs"], args.batch_size, device)
        write_series(series_dir / path.name, mu, logvar, episode["action"], episode["reward"], episode["terminated"], episode["done"])

    files = list_episodes(series_dir)
    firsts = [(s["mu"][0], s["logvar"][0]) for s in map(read_series, files)]
    write_initial_latents(series_dir / INITIAL_LATENTS_FILE, [p.stem for p in files],
                          np.stack([mu for mu, _ in firsts]), np.stack([logvar for _, logvar in firsts]))
    print(f"wrote {len(todo)} series files and {INITIAL_LATENTS_FILE} to {series_dir}/")
    print("next: python 04_train_rnn.py")


if __name__ == "__main__":
    run_stage(main)
