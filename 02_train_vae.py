"""Stage 02: train V, the convolutional VAE, on the frames of data/rollout.

Frames are streamed from disk (bounded memory at any dataset size). The last
HELD_OUT_FRACTION of the sorted episode files is held out. After every epoch the model,
optimizer and random state are saved to checkpoints/vae.pt, so an interrupted run resumes
where it was (Ctrl-C or SIGTERM saves mid-epoch too), and a PNG grid of held-out frames (top) over
their reconstructions (bottom) is written.
"""

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.atomic import prepare_output, require_free_space
from worldmodels.checkpoints import (
    VAE_FILE,
    TrainingProgress,
    check_finite_loss,
    default_device,
    refuse_to_replace,
    resume_training,
    save_training,
    training_checkpoint_bytes,
)
from worldmodels.cli import finite_float, require_at_least, require_folders, run_stage
from worldmodels.curves import draw_curves
from worldmodels.data import split_episodes, stream_frame_batches
from worldmodels.episodes import SKIP_FLAG, map_episodes, read_rollout_frames, require_episodes, rollout_length
from worldmodels.errors import DataError
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.interrupt import Interrupted, stop_requested
from worldmodels.logs import write_csv
from worldmodels.pictures import enlarge, save_png
from worldmodels.run_config import config_path, write_run_config
from worldmodels.vae import ConvVAE, vae_loss

EPOCHS = 10  # passes over the dataset (the original's CarRacing setting)
BATCH_SIZE = 100  # images per batch
LEARNING_RATE = 1e-4  # Adam
Z_SIZE = 32  # latent size
KL_TOLERANCE = 0.5  # KL floored at KL_TOLERANCE * Z_SIZE nats per image (free bits)
HELD_OUT_FRACTION = 0.05  # last 5% of the sorted episode files, never trained on
HELD_OUT_FRAMES = 10_000  # held-out frames scored after each epoch (at most)
BUFFER_EPISODES = 50  # episodes shuffled together in memory (~0.6 GB at 1000 frames each)
INIT_FROM = ""  # a vae.pt whose weights a new run starts from ("": random weights)
SEED = 0  # model initialisation, sampling and data order
DATA_DIR = "data/rollout"
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--lr", type=finite_float, default=LEARNING_RATE)
    parser.add_argument("--z-size", type=int, default=Z_SIZE)
    parser.add_argument("--kl-tolerance", type=finite_float, default=KL_TOLERANCE)
    parser.add_argument("--held-out-fraction", type=finite_float, default=HELD_OUT_FRACTION)
    parser.add_argument("--buffer-episodes", type=int, default=BUFFER_EPISODES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and train from scratch")
    parser.add_argument("--init-from", default=INIT_FROM, help="a vae.pt whose weights a new run starts from (e.g. the last round's V)")
    parser.add_argument(SKIP_FLAG, action="store_true", help="leave out episode files that cannot be read, with a warning")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "epochs", "batch_size", "z_size", "buffer_episodes")
    require_folders(parser, args, "data_dir", "checkpoint_dir")
    if not 0 <= args.held_out_fraction < 1:
        parser.error("--held-out-fraction must be in [0, 1)")
    if args.lr <= 0 or args.kl_tolerance < 0:
        parser.error("--lr must be positive and --kl-tolerance non-negative")
    return args


@torch.no_grad()
def evaluate(vae: ConvVAE, frames: np.ndarray, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Mean loss terms over held-out frames, with a fixed sampling seed that leaves the
    training run's random stream untouched."""
    vae.eval()
    totals = np.zeros(3)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        for start in tqdm(range(0, len(frames), args.batch_size), desc="held-out frames", leave=False, dynamic_ncols=True):
            x = torch.from_numpy(frames_to_tensor_layout(frames[start : start + args.batch_size])).to(device)
            recon, mu, logvar = vae(x)
            terms = vae_loss(x, recon, mu, logvar, args.kl_tolerance)
            totals += np.array([t.item() for t in terms]) * len(x)
    vae.train()
    return dict(zip(("loss", "recon", "kl"), totals / len(frames)))


@torch.no_grad()
def save_reconstructions(vae: ConvVAE, frames: np.ndarray, path: Path, device: torch.device) -> None:
    """PNG: frames on the top row, V's reconstructions (from mu) below, 2x enlarged."""
    vae.eval()
    mu, _ = vae.encode(torch.from_numpy(frames_to_tensor_layout(frames)).to(device))
    recon = (vae.decode(mu).cpu().numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)
    vae.train()
    grid = np.concatenate([np.concatenate(list(frames), axis=1), np.concatenate(list(recon), axis=1)], axis=0)
    save_png(path, enlarge(grid, 2))


def held_out_frames(files: list[Path], limit: int, skip_bad: bool) -> np.ndarray:
    """Up to ``limit`` frames spread evenly over the held-out episodes."""
    per_file = max(1, limit // max(1, len(files)))

    def spread(path: Path) -> np.ndarray:
        frames = read_rollout_frames(path)
        return frames[np.linspace(0, len(frames) - 1, min(per_file, len(frames))).astype(int)]

    return np.concatenate(list(map_episodes(files, spread, skip_bad, desc="reading held-out frames").values()))[:limit]


def main(argv=None) -> None:
    args = parse_args(argv)
    device = default_device()
    torch.manual_seed(args.seed)
    files = require_episodes(args.data_dir, "01_generate_data.py")
    vae = ConvVAE(args.z_size).to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=args.lr)
    checkpoint_bytes = training_checkpoint_bytes(vae)
    checkpoint_path = prepare_output(args.checkpoint_dir, checkpoint_bytes) / VAE_FILE
    log_path = checkpoint_path.parent / "vae_log.csv"
    columns = ["epoch", "train_loss", "train_recon", "train_kl", "held_out_loss", "held_out_recon", "held_out_kl", "seconds"]
    refuse_to_replace(checkpoint_path, [log_path], args.restart)
    progress = resume_training(checkpoint_path, "vae", vae, optimizer, args.restart, columns, made_from={}, init_from=args.init_from)
    write_csv(log_path, columns, progress.log)  # the log as the checkpoint has it
    if progress.epoch >= args.epochs:
        print(f"{checkpoint_path} is already trained for {progress.epoch} epochs; pass --restart or more --epochs to train again")
        print("next: python 03_generate_rnn_data.py")
        return

    write_run_config(config_path(log_path), args, "02_train_vae.py")  # what this run was started with, beside its log
    lengths = map_episodes(files, rollout_length, args.skip_bad_files)  # checks every file before training starts
    train_files, held_out_files = split_episodes(list(lengths), args.held_out_fraction)
    held_out = held_out_frames(held_out_files or train_files, HELD_OUT_FRAMES, args.skip_bad_files)
    train_frames = sum(lengths[path] for path in train_files)
    print(f"{len(train_files)} training episodes ({train_frames} frames), {len(held_out_files)} held out; device {device}")
    picture = checkpoint_path.parent / "vae_reconstructions.png"

    for epoch in range(progress.epoch + 1, args.epochs + 1):
        require_free_space(checkpoint_path.parent, checkpoint_bytes)  # not an epoch of training that cannot be saved
        started = time.time() - progress.seconds
        batches = stream_frame_batches(train_files, args.batch_size, args.buffer_episodes, seed=args.seed + epoch,
                                       skip_bad=args.skip_bad_files)
        batches = itertools.islice(batches, progress.batch, None)  # after a Ctrl-C: the epoch's order, from where it stopped
        bar = tqdm(batches, initial=progress.batch, total=max(1, train_frames // args.batch_size), desc=f"epoch {epoch}/{args.epochs}",
                   dynamic_ncols=True)
        for frames in bar:
            x = torch.from_numpy(frames_to_tensor_layout(frames)).to(device)
            recon, mu, logvar = vae(x)
            loss, recon_term, kl_term = vae_loss(x, recon, mu, logvar, args.kl_tolerance)
            check_finite_loss(loss, checkpoint_path, epoch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            progress.batch += 1
            progress.add(loss=loss.item() * len(x), recon=recon_term.item() * len(x), kl=kl_term.item() * len(x), frames=len(x))
            bar.set_postfix(loss=f"{loss.item():.1f}", kl=f"{kl_term.item():.1f}")
            if stop_requested():
                progress.seconds = time.time() - started
                save_training(checkpoint_path, "vae", vae, optimizer, progress)
                raise Interrupted(f"{checkpoint_path} saved after batch {progress.batch} of epoch {epoch}; re-run to go on from there")
        if not progress.sums:
            raise DataError(f"{args.data_dir}: fewer training frames than one batch of {args.batch_size}; collect more episodes or lower --batch-size")
        train = {k: progress.sums[k] / progress.sums["frames"] for k in ("loss", "recon", "kl")}
        scores = evaluate(vae, held_out, args, device)
        row = {"epoch": str(epoch), **{f"train_{k}": f"{v:.3f}" for k, v in train.items()},
               **{f"held_out_{k}": f"{v:.3f}" for k, v in scores.items()}, "seconds": f"{time.time() - started:.1f}"}
        progress = TrainingProgress(epoch=epoch, log=progress.log + [row])
        save_training(checkpoint_path, "vae", vae, optimizer, progress, held_out_loss=float(scores["loss"]))
        write_csv(log_path, columns, progress.log)
        save_reconstructions(vae, held_out[np.linspace(0, len(held_out) - 1, 8).astype(int)], picture, device)
        print(f"epoch {epoch}: train loss {train['loss']:.2f} (recon {train['recon']:.2f}, KL {train['kl']:.2f}); "
              f"held-out loss {scores['loss']:.2f} (recon {scores['recon']:.2f}, KL {scores['kl']:.2f})")

    print(f"wrote {checkpoint_path}, {log_path}, {picture} and {draw_curves(log_path)}")
    print("next: python 03_generate_rnn_data.py")


if __name__ == "__main__":
    run_stage(main)
