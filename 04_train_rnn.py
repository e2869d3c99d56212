"""Stage 04: train M, the MDN-RNN, on the encoded episodes in data/series.

An epoch is one pass over the training episodes: BATCH_SIZE whole episodes at a time, from
their first step, cut into chunks of SEQ_LEN steps through which M carries its hidden
state (one optimizer step per chunk), so every step counts once, with the history it has
in a dream; z is resampled from V's mu and logvar every batch. M learns z_{t+1} (a mixture
of GAUSSIANS per latent dimension), the reward of each action and whether the episode
ended. The last HELD_OUT_FRACTION of the sorted files is held out and scored on whole
episodes after every epoch (and on their first 100 steps, where every dream starts). The
model, optimizer and random states are saved to checkpoints/mdrnn.pt after every epoch, so
an interrupted run resumes where it was (Ctrl-C or SIGTERM saves after the batch in hand).

--member k > 0 trains ensemble member k instead (checkpoints/mdrnn_member<k>.pt and its log),
the same model on the same data from seed SEED + k: where the members disagree, M is
guessing, and a dream can charge for it (05_train_controller.py --members, --disagreement).

--dropout P hides a share P of h's units from M's heads, a new mask every step, in training;
05's dreams then draw such a mask every step too, so that each dream runs in a slightly
different M and C cannot lean on one M's quirks (Wellmer & Kwok 2021, "Dropout's Dream Land").

--action-head gives M a fourth head that predicts the action a driver takes at each step, from
what C sees then ([z_t, h_t]), trained on the episodes an agent drove (01 --policy; the rest
train the other heads only): M then models the driver too, as the paper's iterative procedure
asks ("imitate controller that has already learned"). The head has a controller's very form, so
it is also written as one, checkpoints/imitation_controller.pt (a start for 05 --init-from;
it needs V in the checkpoint folder). With --init-from an M without the head, the head starts new.

--reward-floor F has the reward head learn max(reward, F): with F = -1, the -100 of leaving the
playfield (which also ends the episode, what the done head learns) no longer swings the
head's squared error over the ordinary steps around it.
"""

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import (VAE_FILE, VISION, controller_config, default_device, fingerprint, load_model, member_file,
                                     save_controller, training_checkpoint_bytes)
from worldmodels.cli import finite_float, require_at_least, require_folders, run_stage, seed_value
from worldmodels.constants import ACTION_SIZE
from worldmodels.data import SeriesEpisodes, split_episodes, time_chunks
from worldmodels.episodes import NOT_RECORDED, SKIP_FLAG, driven_by_agent, map_episodes, read_series, require_episodes
from worldmodels.errors import DataError
from worldmodels.mdrnn import MDNRNN, head_scores, mdrnn_loss
from worldmodels.training import EpochScore, TrainingRun

EPOCHS = 200  # passes over the data (the original: 4000 batches of 100 x 1000 steps on 2M steps)
BATCH_SIZE = 100  # episodes per batch
SEQ_LEN = 1000  # steps per chunk (backpropagation through time); h is carried across chunks
LEARNING_RATE = 1e-3  # Adam
GRAD_CLIP = 1.0  # max gradient norm
HIDDEN_SIZE = 256  # LSTM units
GAUSSIANS = 5  # mixture components per latent dimension
DROPOUT = 0.0  # share of h's units M's heads do not see in training (0: the paper's M); dreams then draw masks too
REWARD_FLOOR = None  # rewards below it are learned as it (None: as recorded; -1 keeps the -100 of leaving the playfield out)
HELD_OUT_FRACTION = 0.05  # last 5% of the sorted episode files
INIT_FROM = ""  # an mdrnn.pt whose weights a new run starts from ("": random weights)
ACTION_HEAD = False  # M also predicts the action of the agent that drove an episode (the paper's M does not)
IMITATION_FILE = "imitation_controller.pt"  # the action head, written as a controller
EARLY_STOP = 0  # stop after this many epochs without a better held-out loss (0: run all EPOCHS)
MEMBER = 0  # 0: M itself (mdrnn.pt); k > 0: ensemble member k (mdrnn_member<k>.pt), trained with seed SEED + k
SEED = 0
SERIES_DIR = "data/series"
CHECKPOINT_DIR = "checkpoints"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--early-stop", type=int, default=EARLY_STOP, metavar="N",
                        help="stop after N epochs without a better held-out loss (0: run all --epochs); for fine-tuning with --init-from")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--seq-len", type=int, default=SEQ_LEN)
    parser.add_argument("--lr", type=finite_float, default=LEARNING_RATE)
    parser.add_argument("--grad-clip", type=finite_float, default=GRAD_CLIP)
    parser.add_argument("--hidden-size", type=int, default=HIDDEN_SIZE)
    parser.add_argument("--gaussians", type=int, default=GAUSSIANS)
    parser.add_argument("--dropout", type=finite_float, default=DROPOUT,
                        help="dropout on h before M's heads in training; a dream then runs a new mask every step (0: none)")
    parser.add_argument("--reward-floor", type=finite_float, default=REWARD_FLOOR,
                        help="the reward head learns max(reward, FLOOR): the -100 of leaving the playfield (an end, which the "
                             "done head learns) no longer swings its squared error (default: rewards as recorded)")
    parser.add_argument("--held-out-fraction", type=finite_float, default=HELD_OUT_FRACTION)
    parser.add_argument("--seed", type=seed_value, default=SEED)
    parser.add_argument("--member", type=int, default=MEMBER,
                        help="train ensemble member k > 0 (mdrnn_member<k>.pt, seed + k) beside M, for the dream's disagreement penalty")
    parser.add_argument("--action-head", action="store_true", default=ACTION_HEAD,
                        help="M also predicts the action of the agent that drove an episode (from 01 --policy episodes), and "
                             f"writes that head as a controller, {IMITATION_FILE}")
    parser.add_argument("--series-dir", default=SERIES_DIR)
    parser.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and train from scratch")
    parser.add_argument("--init-from", default=INIT_FROM,
                        help="an mdrnn.pt whose weights a new run starts from (e.g. the last round's M, trained on another V's latents)")
    parser.add_argument(SKIP_FLAG, action="store_true", help="leave out episode files that cannot be read, with a warning")
    args = parser.parse_args(argv)
    require_at_least(parser, args, 1, "epochs", "batch_size", "seq_len", "hidden_size", "gaussians")
    require_at_least(parser, args, 0, "member", "early_stop")
    require_folders(parser, args, "series_dir", "checkpoint_dir")
    if not 0 <= args.held_out_fraction < 1 or not 0 <= args.dropout < 1:
        parser.error("--held-out-fraction and --dropout must be in [0, 1)")
    if args.lr <= 0 or args.grad_clip <= 0:
        parser.error("--lr and --grad-clip must be positive")
    return args


@torch.no_grad()
def evaluate(mdrnn: MDNRNN, data: SeriesEpisodes, seed: int, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
    """Losses on whole held-out episodes from M's zero state, with fixed z samples, plus
    'nll_first_100' (the z NLL on their first 100 steps, where dreams start), and head
    scores (worldmodels.mdrnn.head_scores)."""
    mdrnn.eval()
    batch = data.sample(np.arange(len(data.lengths)), np.random.default_rng(seed))
    batch = {k: v.to(device) for k, v in batch.items()}
    out, _ = mdrnn(batch["z"], batch["action"])
    mdrnn.train()
    first = batch | {"next_mask": batch["next_mask"] * (torch.arange(batch["next_mask"].shape[1], device=device) < 100)}
    losses = {k: v.item() for k, v in mdrnn_loss(out, batch).items()}
    return losses | {"nll_first_100": mdrnn_loss(out, first)["nll"].item()}, head_scores(out, batch)


def train_on_episodes(mdrnn: MDNRNN, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], seq_len: int,
                      grad_clip: float, batch_size: int) -> dict[str, float]:
    """One optimizer step per chunk of ``seq_len`` steps of a batch of whole episodes
    (SeriesEpisodes.sample), carrying M's hidden state from chunk to chunk (truncated
    backpropagation through time). A chunk's loss is the mean over its real steps; it is
    weighted by its real steps over those of a full chunk of a full batch (``batch_size``
    episodes x ``seq_len`` steps), so every real step weighs the same in every chunk, the
    short last chunk and a smaller last batch included, and padded steps nothing. Returns the
    losses summed over steps and the number of steps."""
    sums, state = {"steps": 0.0}, None
    for chunk in time_chunks(batch, seq_len):
        out, state = mdrnn(chunk["z"], chunk["action"], state)
        state = tuple(s.detach() for s in state)
        losses = mdrnn_loss(out, chunk)
        steps = chunk["step_mask"].sum().item()
        optimizer.zero_grad()
        (losses["loss"] * steps / (batch_size * seq_len)).backward()
        torch.nn.utils.clip_grad_norm_(mdrnn.parameters(), grad_clip)
        optimizer.step()
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + value.item() * steps
        sums["steps"] += steps
    return sums


def require_driven_episodes(series_dir: str, episodes: list[dict[str, np.ndarray]]) -> None:
    """--action-head learns from the training episodes an agent drove; a DataError when there are none."""
    if not any(driven_by_agent(e["source"]) for e in episodes):
        unrecorded = sum(e["source"] == NOT_RECORDED for e in episodes)
        raise DataError(f"{series_dir}: no training episode was driven by an agent, so M's action head has nothing to imitate; "
                        "collect some with 01_generate_data.py --policy and encode them with 03_generate_rnn_data.py"
                        + (f" ({unrecorded} series do not record what drove them: re-encode them with 03 --overwrite)"
                           if unrecorded else ""))


def write_imitation_controller(mdrnn: MDNRNN, directory: Path) -> None:
    """M's action head as a controller for this V and M (directory/IMITATION_FILE), when M has
    one and V is in ``directory``."""
    if mdrnn.action_head is None:
        return
    if not (directory / VAE_FILE).exists():
        print(f"no {directory / VAE_FILE}: {IMITATION_FILE} (the action head as a controller) needs V beside M; not written")
        return
    vae, mdrnn_cpu = load_model(directory / VAE_FILE, VISION), copy.deepcopy(mdrnn).cpu()
    fingerprint_m = fingerprint(mdrnn_cpu)
    save_controller(directory / IMITATION_FILE, mdrnn_cpu.action_head_params().numpy(), controller_config(vae, mdrnn_cpu, "zh"),
                    generation=0, trained_in="imitation", history=[{"world": "imitation", "generation": 0,
                                                                    "from": f"the action head of M {fingerprint_m}"}])
    print(f"wrote {directory / IMITATION_FILE}: the action head as a controller (05_train_controller.py --init-from it)")


def describe_heads(scores: dict[str, float]) -> str:
    return (f"reward MSE {scores['reward_mse']:.3f}, new-tile steps told apart {scores['tile_accuracy']:.1%} "
            f"(they are {scores['tile_steps']:.1%} of steps; ranked above other steps {scores['tile_auc']:.1%} of the time), "
            f"episode ends found {scores['ends_found']} of {scores['ends']} with {scores['false_ends']} false alarms")


def main(argv=None) -> None:
    args = parse_args(argv)
    device = default_device()
    seed = args.seed + args.member  # ensemble members differ by their initial weights, z samples and batch order
    torch.manual_seed(seed)
    episodes = map_episodes(require_episodes(args.series_dir, "03_generate_rnn_data.py"), read_series, args.skip_bad_files)
    first, *_ = episodes
    z_size, vae_id = episodes[first]["mu"].shape[1], episodes[first]["vae"]
    for path, episode in episodes.items():
        if episode["vae"] != vae_id:
            raise DataError(f"{path}: encoded by V {episode['vae']}, but {first.name} by V {vae_id}: the series come from "
                            "different Vs; re-run 03_generate_rnn_data.py, which encodes again what another V encoded")
    vae_path = Path(args.checkpoint_dir) / VAE_FILE
    if vae_path.exists() and fingerprint(load_model(vae_path, VISION)) != vae_id:
        raise DataError(f"{args.series_dir}: encoded by V {vae_id}, but {vae_path} is another V; re-run 03_generate_rnn_data.py "
                        "with it first")
    train_files, held_out_files = split_episodes(list(episodes), args.held_out_fraction)
    if args.action_head:
        require_driven_episodes(args.series_dir, [episodes[path] for path in train_files])
    mdrnn = MDNRNN(z_size, ACTION_SIZE, args.hidden_size, args.gaussians, args.dropout, args.action_head).to(device)
    rng = np.random.default_rng(seed)  # z samples; its state is saved with the model
    checkpoint_path = prepare_output(args.checkpoint_dir, training_checkpoint_bytes(mdrnn)) / member_file(args.member)
    terms = ("loss", "nll", "reward", "done") + (("action",) if args.action_head else ())
    columns = (["epoch"] + [f"{split}_{k}" for split in ("train", "held_out") for k in terms]
               + ["held_out_nll_first_100", "held_out_tile_accuracy", "held_out_tile_auc", "held_out_ends", "held_out_ends_found",
                  "held_out_false_ends", "seconds"])
    run = TrainingRun(checkpoint_path, f"{checkpoint_path.stem}_log.csv", "mdrnn", mdrnn,
                      torch.optim.Adam(mdrnn.parameters(), lr=args.lr), columns, weight="steps", made_from={"vae": vae_id}, rng=rng,
                      early_stop=args.early_stop)
    run.resume(args.restart, args.init_from)
    held_out = SeriesEpisodes([episodes[path] for path in held_out_files or train_files], args.reward_floor)
    if run.done(args.epochs):
        print(f"held-out heads: {describe_heads(evaluate(mdrnn, held_out, args.seed, device)[1])}")
        write_imitation_controller(mdrnn, Path(args.checkpoint_dir))
        print("next: python 05_train_controller.py")
        return

    run.record_settings(args, "04_train_rnn.py")
    train = SeriesEpisodes([episodes[path] for path in train_files], args.reward_floor)
    batches_per_epoch = -(-len(train.lengths) // args.batch_size)
    print(f"{len(train_files)} training episodes ({train.steps} steps; {batches_per_epoch} batches of up to {args.batch_size} "
          f"whole episodes per epoch, in chunks of {args.seq_len} steps), {len(held_out_files)} held out; device {device}")

    def train_batch(episode_batch: np.ndarray, epoch: int) -> dict[str, float]:
        batch = {k: v.to(device) for k, v in train.sample(episode_batch, rng).items()}
        return train_on_episodes(mdrnn, run.optimizer, batch, args.seq_len, args.grad_clip, args.batch_size)

    def score_epoch(epoch: int, train_means: dict[str, float]) -> EpochScore:
        scores, heads = evaluate(mdrnn, held_out, args.seed, device)
        imitation = f"; action {scores['action']:.3f}" if args.action_head else ""
        row = {**{f"train_{k}": f"{v:.4f}" for k, v in train_means.items()}, **{f"held_out_{k}": f"{v:.4f}" for k, v in scores.items()},
               **{f"held_out_{k}": f"{heads[k]:.4f}" for k in ("tile_accuracy", "tile_auc")},
               **{f"held_out_{k}": str(heads[k]) for k in ("ends", "ends_found", "false_ends")}}
        return EpochScore(row, scores["loss"], f"train loss {train_means['loss']:.3f} (z NLL {train_means['nll']:.3f}, reward "
                          f"{train_means['reward']:.3f}, done {train_means['done']:.3f}); held-out {scores['loss']:.3f} (z NLL "
                          f"{scores['nll']:.3f}, reward {scores['reward']:.3f}, done {scores['done']:.3f}{imitation}; z NLL on the "
                          f"first 100 steps {scores['nll_first_100']:.3f})")

    curves = run.train(args.epochs, lambda epoch: train.epoch_batches(args.batch_size, seed=seed + epoch), batches_per_epoch,
                       train_batch, score_epoch, bar_per_epoch=False)
    # scored again: with early stopping the kept weights are the best epoch's, not the last one's
    print(f"held-out heads of the kept weights: {describe_heads(evaluate(mdrnn, held_out, args.seed, device)[1])}")
    print(f"wrote {checkpoint_path}, {run.log_path} and {curves}")
    write_imitation_controller(mdrnn, Path(args.checkpoint_dir))
    print("next: python 05_train_controller.py")


if __name__ == "__main__":
    run_stage(main)
