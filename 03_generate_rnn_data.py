"""Stage 03: encode every rollout with V into data/series (the MDN-RNN's training data).

For each data/rollout/<id>.npz writes data/series/<id>.npz with V's mu and logvar per
frame (float16), the episode's actions, rewards and done flags, and V's fingerprint;
episodes already encoded by this V are skipped, and those another V encoded (V was
retrained since) are encoded again. Then data/series/initial_latents.npz with every
episode's first latent (dreams start from these).
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import VAE_FILE, VISION, default_device, fingerprint, load_model
from worldmodels.cli import require_at_least, require_folders, run_stage
from worldmodels.episodes import (
    INITIAL_LATENTS_FILE,
    SKIP_FLAG,
    DataError,
    list_episodes,
    map_episodes,
    read_rollout,
    read_rollout_source,
    read_series,
    require_episodes,
    series_vae,
    write_initial_latents,
    write_series,
)
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.run_config import write_run_config
from worldmodels.vision import VisionModel

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
    parser.add_argument(SKIP_FLAG, action="store_true", help="leave out episode files that cannot be read, with a warning")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "batch_size")
    require_folders(parser, args, "rollout_dir", "series_dir", "checkpoint_dir")
    return args


@torch.no_grad()
def encode_frames(vae: VisionModel, frames: np.ndarray, batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
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
    vae = load_model(Path(args.checkpoint_dir) / VAE_FILE, VISION).to(device)
    series_dir = prepare_output(args.series_dir, needed_bytes=2**20)  # a series file of 1000 steps is about 0.2 MB
    vae_id = fingerprint(vae)
    encoded_by = {p: series_vae(series_dir / p.name) for p in rollouts}
    todo = [p for p in rollouts if args.overwrite or encoded_by[p] != vae_id]
    stale = sum(encoded_by[p] is not None and encoded_by[p] != vae_id for p in rollouts)
    print(f"encoding {len(todo)} of {len(rollouts)} episodes with V {vae_id} ({len(rollouts) - len(todo)} already encoded by it in "
          f"{series_dir}; {stale} encoded by another V are encoded again)")

    write_run_config(series_dir / "encode_config.json", args, "03_generate_rnn_data.py")

    def encode(path: Path) -> None:
        episode = read_rollout(path)
        if (kind := episode["frame_kind"]) != vae.frame_kind:
            raise DataError(f"{path}: holds {kind} frames, and V ({Path(args.checkpoint_dir) / VAE_FILE}) sees {vae.frame_kind} "
                            f"frames; encode episodes of its kind (01_generate_data.py --frame {vae.frame_kind}) or train a V on these")
        mu, logvar = encode_frames(vae, episode["obs"], args.batch_size, device)
        write_series(series_dir / path.name, mu, logvar, episode["action"], episode["reward"], episode["terminated"], episode["done"],
                     vae_id, read_rollout_source(path))

    written = len(map_episodes(todo, encode, args.skip_bad_files, desc="encoding episodes"))

    def first_latent(path: Path) -> tuple[np.ndarray, np.ndarray]:
        series = read_series(path)
        if series["vae"] != vae_id:
            raise DataError(f"{path}: encoded by V {series['vae']}, not this V ({vae_id}), and its rollout is not in "
                            f"{args.rollout_dir}; delete it or re-run with that --rollout-dir")
        return series["mu"][0], series["logvar"][0]

    firsts = map_episodes(list_episodes(series_dir), first_latent, args.skip_bad_files)
    write_initial_latents(series_dir / INITIAL_LATENTS_FILE, [p.stem for p in firsts],
                          np.stack([mu for mu, _ in firsts.values()]), np.stack([logvar for _, logvar in firsts.values()]), vae_id)
    print(f"wrote {written} series files and {INITIAL_LATENTS_FILE} to {series_dir}/")
    print("next: python 04_train_rnn.py")


if __name__ == "__main__":
    run_stage(main)
