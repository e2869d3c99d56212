"""Stage 02: train V, the vision model, on the frames of data/rollout: the paper's convolutional
VAE (VISION = "vae") or the same encoder and decoder trained as a VAE-GAN (VISION = "vaegan",
Larsen et al. 2016: reconstructions measured in a discriminator's features; see
worldmodels/vision/vaegan.py). Stages 03-05 take either as it is.

Frames are streamed from disk (bounded memory at any dataset size). With FRAME_STRIDE k > 1
an epoch trains on every k-th frame of every episode, from offset (epoch - 1) mod k, so k
epochs see every frame once: V sees many episodes at the cost of few (consecutive frames
are nearly alike). The last
HELD_OUT_FRACTION of the sorted episode files is held out. After every epoch the model,
optimizer and random state are saved to checkpoints/vae.pt, so an interrupted run resumes
where it was (Ctrl-C or SIGTERM saves mid-epoch too), and a PNG grid of held-out frames (top) over
their reconstructions (bottom) is written.

On full frames (01_generate_data.py --frame full) the indicator bar, whose speed gauge is a few
of V's pixels, can be weighted: --bar-weight W counts its rows W times in the training
reconstruction (the held-out loss stays unweighted, so runs compare).

--task-weight W --task-from MDRNN trains a task-aware V (worldmodels/task_aware.py): on
stretches of consecutive steps (with FRAME_STRIDE k, every k-th stretch), with M's reward and
done losses reaching V's encoder W times beside V's own loss, and M (started from MDRNN)
trained along; the held-out loss is V's own.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import VAE_FILE, default_device, load_checkpoint, load_model, training_checkpoint_bytes
from worldmodels.cli import finite_float, require_at_least, require_folders, run_stage, seed_value
from worldmodels.data import split_episodes, stream_frame_batches, strided_length
from worldmodels.errors import DataError
from worldmodels.episodes import (SKIP_FLAG, map_episodes, read_frame_kind_of, read_rollout_frames, require_episodes,
                                  rollout_length)
from worldmodels.frames import PAPER_FRAME, frames_to_tensor_layout
from worldmodels.pictures import enlarge, save_png
from worldmodels.task_aware import STRETCH, TASK_TERMS, stream_stretch_batches, stretches_in, task_aware_step
from worldmodels.training import EpochScore, TrainingRun
from worldmodels.vision import VISION_MODELS, TrainingSettings, VisionModel, decode_frames

VISION = "vae"  # V's kind: "vae" (the paper's) or "vaegan"
EPOCHS = 10  # passes over the dataset (the original's CarRacing setting)
BATCH_SIZE = 100  # images per batch
LEARNING_RATE = 1e-4  # Adam
Z_SIZE = 32  # latent size
KL_TOLERANCE = 0.5  # KL floored at KL_TOLERANCE * Z_SIZE nats per image (free bits)
HELD_OUT_FRACTION = 0.05  # last 5% of the sorted episode files, never trained on
HELD_OUT_FRAMES = 10_000  # held-out frames scored after each epoch (at most)
BUFFER_EPISODES = 50  # episodes shuffled together in memory (~0.6 GB at 1000 frames each, / FRAME_STRIDE)
FRAME_STRIDE = 1  # an epoch trains on every FRAME_STRIDE-th frame of each episode (offsets rotate by epoch)
GAMMA = 1.0  # VAE-GAN: the decoder's weight on the feature reconstruction against its GAN loss
PIXEL_WARMUP_EPOCHS = 1.0  # VAE-GAN: epochs over which the pixel error's weight falls from 1 to PIXEL_WEIGHT_FLOOR
PIXEL_WEIGHT_FLOOR = 0.25  # VAE-GAN: the pixel error's weight after the warm-up
BAR_WEIGHT = 1.0  # full frame: the indicator bar's rows count this many times in V's training reconstruction
TASK_WEIGHT = 0.0  # > 0: a task-aware V, M's reward and done losses reaching V's encoder with this weight
TASK_FROM = ""  # the mdrnn.pt that starts the M trained beside a task-aware V (e.g. the last round's)
INIT_FROM = ""  # a vae.pt whose weights a new run starts from ("": random weights)
EARLY_STOP = 0  # stop after this many epochs without a better held-out loss (0: run all EPOCHS)
SEED = 0  # model initialisation, sampling and data order
DATA_DIR = "data/rollout"
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vision", choices=sorted(VISION_MODELS), default=VISION, help="V's kind (worldmodels/vision/)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--early-stop", type=int, default=EARLY_STOP, metavar="N",
                        help="stop after N epochs without a better held-out loss (0: run all --epochs); for fine-tuning with --init-from")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--lr", type=finite_float, default=LEARNING_RATE)
    parser.add_argument("--z-size", type=int, default=Z_SIZE)
    parser.add_argument("--kl-tolerance", type=finite_float, default=KL_TOLERANCE)
    parser.add_argument("--gamma", type=finite_float, default=GAMMA, help="VAE-GAN only")
    parser.add_argument("--pixel-warmup-epochs", type=finite_float, default=PIXEL_WARMUP_EPOCHS, help="VAE-GAN only")
    parser.add_argument("--pixel-weight-floor", type=finite_float, default=PIXEL_WEIGHT_FLOOR, help="VAE-GAN only")
    parser.add_argument("--bar-weight", type=finite_float, default=BAR_WEIGHT,
                        help="full frames only: the weight of the indicator bar's rows in the training reconstruction")
    parser.add_argument("--task-weight", type=finite_float, default=TASK_WEIGHT,
                        help="> 0: train V with M's reward and done losses reaching its encoder, this many times (worldmodels/task_aware.py)")
    parser.add_argument("--task-from", default=TASK_FROM, help="with --task-weight: the mdrnn.pt that starts the M trained beside V")
    parser.add_argument("--held-out-fraction", type=finite_float, default=HELD_OUT_FRACTION)
    parser.add_argument("--buffer-episodes", type=int, default=BUFFER_EPISODES)
    parser.add_argument("--frame-stride", type=int, default=FRAME_STRIDE,
                        help="train each epoch on every k-th frame of each episode (offset (epoch - 1) mod k)")
    parser.add_argument("--seed", type=seed_value, default=SEED)
    parser.add_argument("--data-dir", default=DATA_DIR)
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and train from scratch")
    parser.add_argument("--init-from", default=INIT_FROM, help="a vae.pt whose weights a new run starts from (e.g. the last round's V)")
    parser.add_argument(SKIP_FLAG, action="store_true", help="leave out episode files that cannot be read, with a warning")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "epochs", "batch_size", "z_size", "buffer_episodes", "frame_stride")
    require_at_least(parser, args, 0, "early_stop")
    require_folders(parser, args, "data_dir", "checkpoint_dir")
    if args.task_weight < 0:
        parser.error("--task-weight must be non-negative")
    if args.task_weight > 0 and (not args.task_from or args.vision != "vae"):
        parser.error("--task-weight needs --task-from MDRNN (the M that learns beside V, e.g. the last round's) and --vision vae")
    if not 0 <= args.held_out_fraction < 1:
        parser.error("--held-out-fraction must be in [0, 1)")
    if args.lr <= 0 or min(args.kl_tolerance, args.gamma, args.pixel_warmup_epochs, args.pixel_weight_floor) < 0:
        parser.error("--lr must be positive and --kl-tolerance, --gamma, --pixel-warmup-epochs and --pixel-weight-floor non-negative")
    if args.bar_weight <= 0:
        parser.error("--bar-weight must be positive")
    return args


def pixel_weight(args: argparse.Namespace, batches_done: int, batches_per_epoch: int) -> float:
    """The VAE-GAN's pixel-error weight: 1 falling linearly to the floor over the warm-up."""
    warmup = args.pixel_warmup_epochs * batches_per_epoch
    return max(args.pixel_weight_floor, 1 - batches_done / warmup) if warmup > 0 else args.pixel_weight_floor


@torch.no_grad()
def evaluate(vae: VisionModel, frames: np.ndarray, settings: TrainingSettings, args: argparse.Namespace,
             device: torch.device) -> dict[str, float]:
    """Mean loss terms over held-out frames, with a fixed sampling seed that leaves the
    training run's random stream untouched."""
    vae.eval()
    totals = dict.fromkeys(vae.loss_terms, 0.0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(args.seed)
        for start in tqdm(range(0, len(frames), args.batch_size), desc="held-out frames", leave=False, dynamic_ncols=True):
            x = torch.from_numpy(frames_to_tensor_layout(frames[start : start + args.batch_size])).to(device)
            for name, value in vae.evaluate(x, settings).items():
                totals[name] += value * len(x)
    vae.train()
    return {name: total / len(frames) for name, total in totals.items()}


@torch.no_grad()
def save_reconstructions(vae: VisionModel, frames: np.ndarray, path: Path, device: torch.device) -> None:
    """PNG: frames on the top row, V's reconstructions (from mu) below, 2x enlarged."""
    vae.eval()
    mu, _ = vae.encode(torch.from_numpy(frames_to_tensor_layout(frames)).to(device))
    recon = decode_frames(vae, mu)
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


def refuse_another_frame_kind(init_from: str, vision: str, frame_kind: str) -> None:
    """A one-line DataError if the V to start from saw another kind of frame than the episodes hold."""
    if init_from and (seen := load_checkpoint(init_from, vision, "02_train_vae.py")["config"]["frame_kind"]) != frame_kind:
        raise DataError(f"{init_from}: a V of {seen} frames, and these episodes hold {frame_kind} frames; start from a V of "
                        f"{frame_kind} frames, or from scratch (no --init-from)")


def epoch_plan(args: argparse.Namespace, lengths: dict[Path, int], train_files: list[Path],
               stretches_per_batch: int | None) -> tuple[int, str]:
    """The batches in one epoch (of frames, or with stretches_per_batch of a task-aware V's stretches), and a few
    words on what an epoch samples; too little data is refused in one line."""
    task_aware = stretches_per_batch is not None
    train_frames = sum(lengths[path] for path in train_files)
    epoch_frames = sum(strided_length(lengths[path], args.frame_stride, 0) for path in train_files)  # offset 0: the most
    if task_aware:
        stretches = sum(stretches_in(lengths[path], args.frame_stride) for path in train_files)
        batches = stretches // stretches_per_batch
    else:
        batches = epoch_frames // args.batch_size
    if batches == 0:
        whole = f" (task-aware: in whole stretches of {STRETCH} steps)" if task_aware else ""
        raise DataError(f"{args.data_dir}: fewer training frames than one batch of {args.batch_size}{whole}; collect more "
                        "episodes or lower --batch-size")
    unit = f"stretch of {STRETCH} steps" if task_aware else "frame"
    every = f"; an epoch trains on every {args.frame_stride}-th {unit}" if args.frame_stride > 1 else ""
    every += f", about {epoch_frames}" if every and not task_aware else ""
    return batches, f"{train_frames} frames{every}"


def what_v_learns(args: argparse.Namespace, stretches_per_batch: int | None) -> str:
    """The summary line's words on the options that change V's training loss ("" for the paper's)."""
    words = f" (the bar's rows weighted {args.bar_weight:g} in training)" if args.bar_weight != 1 else ""
    if stretches_per_batch is not None:  # a task-aware V
        words += (f"; task-aware: {stretches_per_batch} stretches of {STRETCH} steps a batch, M's reward and "
                  f"done losses x {args.task_weight:g} reach V, M from {args.task_from}")
    return words


def main(argv=None) -> None:
    args = parse_args(argv)
    device = default_device()
    torch.manual_seed(args.seed)
    files = require_episodes(args.data_dir, "01_generate_data.py")
    frame_kind = read_frame_kind_of(files, args.data_dir, args.skip_bad_files)
    refuse_another_frame_kind(args.init_from, args.vision, frame_kind)
    if args.bar_weight != 1 and frame_kind == PAPER_FRAME:
        raise DataError(f"{args.data_dir}: holds paper frames, which have no indicator bar to weight; drop --bar-weight or "
                        "train on full frames (01_generate_data.py --frame full)")
    vae = VISION_MODELS[args.vision](args.z_size, frame_kind).to(device)
    task = load_model(args.task_from, "mdrnn", z_size=args.z_size).to(device).train() if args.task_weight > 0 else None
    train_terms = [*vae.loss_terms, *(TASK_TERMS if task else ())]
    columns = ["epoch", *[f"train_{term}" for term in train_terms], *[f"held_out_{term}" for term in vae.loss_terms], "seconds"]
    checkpoint_path = prepare_output(args.checkpoint_dir, training_checkpoint_bytes(vae)) / VAE_FILE
    optimizer = vae.make_optimizer(args.lr) if task is None else torch.optim.Adam([*vae.parameters(), *task.parameters()], lr=args.lr)
    run = TrainingRun(checkpoint_path, "vae_log.csv", vae.kind, vae, optimizer, columns, weight="frames",
                      early_stop=args.early_stop, companion=task)
    run.resume(args.restart, args.init_from)
    if run.done(args.epochs):
        print("next: python 03_generate_rnn_data.py")
        return

    run.record_settings(args, "02_train_vae.py")
    lengths = map_episodes(files, rollout_length, args.skip_bad_files)  # checks every file before training starts
    train_files, held_out_files = split_episodes(list(lengths), args.held_out_fraction)
    held_out = held_out_frames(held_out_files or train_files, HELD_OUT_FRAMES, args.skip_bad_files)
    stretches_per_batch = max(1, args.batch_size // STRETCH) if task is not None else None  # None: batches of frames
    batches_per_epoch, sampling = epoch_plan(args, lengths, train_files, stretches_per_batch)
    print(f"{len(train_files)} training episodes ({sampling}), {len(held_out_files)} held out; V: {vae.kind} on "
          f"{frame_kind} frames{what_v_learns(args, stretches_per_batch)}; device {device}")
    picture = run.checkpoint_path.parent / "vae_reconstructions.png"

    def settings(epoch: int) -> TrainingSettings:  # for the next batch of this epoch (or, after it, as it ended)
        weight = pixel_weight(args, (epoch - 1) * batches_per_epoch + run.progress.batch, batches_per_epoch)
        return TrainingSettings(kl_tolerance=args.kl_tolerance, gamma=args.gamma, pixel_weight=weight, bar_weight=args.bar_weight)

    def epoch_batches(epoch: int):
        if task is not None:
            return stream_stretch_batches(train_files, stretches_per_batch, args.buffer_episodes, args.seed + epoch, args.skip_bad_files,
                                          args.frame_stride, (epoch - 1) % args.frame_stride)
        return stream_frame_batches(train_files, args.batch_size, args.buffer_episodes, seed=args.seed + epoch,
                                    skip_bad=args.skip_bad_files, stride=args.frame_stride, offset=(epoch - 1) % args.frame_stride)

    def train_batch(frames: np.ndarray | dict[str, np.ndarray], epoch: int) -> dict[str, float]:
        if task is not None:
            return task_aware_step(vae, task, run.optimizer, frames, settings(epoch), args.task_weight, device)
        x = torch.from_numpy(frames_to_tensor_layout(frames)).to(device)
        terms = vae.train_step(x, run.optimizer, settings(epoch))
        return {name: value * len(x) for name, value in terms.items()} | {"frames": len(x)}

    def score_epoch(epoch: int, train: dict[str, float]) -> EpochScore:
        scores = evaluate(vae, held_out, settings(epoch), args, device)
        save_reconstructions(vae, held_out[np.linspace(0, len(held_out) - 1, 8).astype(int)], picture, device)
        row = {**{f"train_{k}": f"{v:.3f}" for k, v in train.items()}, **{f"held_out_{k}": f"{v:.3f}" for k, v in scores.items()}}
        return EpochScore(row, scores["loss"], f"train loss {train['loss']:.2f} (recon {train['recon']:.2f}, KL {train['kl']:.2f}); "
                          f"held-out loss {scores['loss']:.2f} (recon {scores['recon']:.2f}, KL {scores['kl']:.2f})")

    curves = run.train(args.epochs, epoch_batches, batches_per_epoch, train_batch, score_epoch)
    print(f"wrote {run.checkpoint_path}, {run.log_path}, {picture} and {curves}")
    print("next: python 03_generate_rnn_data.py")


if __name__ == "__main__":
    run_stage(main)
