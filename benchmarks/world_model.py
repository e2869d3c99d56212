"""How well world models (V and M) know a good driver's episodes, side by side.

The episodes are a rollout folder collected with `01_generate_data.py --policy`, which records
the car's true speed (the hull's velocity, which the agent never sees) beside each frame. For
each checkpoint folder this reports, on the same episodes:

- V: the reconstruction error of decode(mu), summed squared error per frame on every
  --frame-stride-th frame (stage 02's "reconstruction" term);
- M: the z NLL (nats per latent dimension, fixed z samples, from M's zero state, as stage
  04 scores its held-out episodes), on the first 100 steps and on whole episodes, and the
  reward head's MSE and tile AUC;
- with M's action head (04 --action-head): its squared error on the driver's actions (summed
  over steering, gas and brake, per step), beside their variance (the error of always
  predicting the mean action);
- how much of the speed z, h, c (the LSTM's cell state) and [h, c] hold: held-out R^2 of a
  ridge probe cross-validated over episodes (worldmodels/probe.py), mean ± std over folds.
  h and c are M's state before each action, fed V's mu and the recorded actions, as an agent
  acting on these frames has them. The first 60 steps (the zoom-in) are left out.

One process, one thread. Usage:

    python benchmarks/world_model.py --rollout-dir data/large/driver --checkpoint-dirs pretrained checkpoints/large
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from worldmodels.checkpoints import MDRNN_FILE, VAE_FILE, load_vae_and_mdrnn  # noqa: E402
from worldmodels.cli import load_stage_script, run_stage  # noqa: E402
from worldmodels.data import SeriesEpisodes  # noqa: E402
from worldmodels.episodes import read_rollout, read_rollout_source, read_rollout_truth, require_episodes  # noqa: E402
from worldmodels.frames import frames_to_tensor_layout  # noqa: E402
from worldmodels.mdrnn import states_before_actions  # noqa: E402
from worldmodels.probe import cross_validated_probe  # noqa: E402
from worldmodels.vision import VisionModel  # noqa: E402
from worldmodels.vision.vae import squared_error  # noqa: E402

ZOOM_STEPS = 60  # left out of the probes: the first second's zoom-in, while the car stands at the start
FEATURES = ("z", "h", "c", "h, c", "z, h, c")
ENCODE_BATCH = 500


@torch.no_grad()
def encode_episode(vae: VisionModel, obs: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """obs uint8 [T, 64, 64, 3] -> mu, logvar [T, Z] and the reconstruction error of every
    ``stride``-th frame [ceil(T / stride)]."""
    x = torch.from_numpy(frames_to_tensor_layout(obs))
    mu, logvar = zip(*(vae.encode(x[i:i + ENCODE_BATCH]) for i in range(0, len(x), ENCODE_BATCH)))
    mu, logvar = torch.cat(mu), torch.cat(logvar)
    errors = squared_error(vae.decode(mu[::stride]), x[::stride])
    return mu.numpy(), logvar.numpy(), errors.numpy()


def measure(folder: Path, episode_files: list[Path], stride: int, folds: int, seed: int) -> dict[str, str]:
    """The table row of one world model (V and M of ``folder``)."""
    vae, mdrnn = load_vae_and_mdrnn(folder / VAE_FILE, folder / MDRNN_FILE)
    series, errors, probe_inputs, speeds = [], [], {name: [] for name in ("z", "h", "c")}, []
    for path in tqdm(episode_files, desc=str(folder), leave=False):
        rollout = read_rollout(path)
        mu, logvar, error = encode_episode(vae, rollout["obs"], stride)
        h, c = (state.numpy() for state in states_before_actions(mdrnn, torch.from_numpy(mu), torch.from_numpy(rollout["action"])))
        series.append(dict(mu=mu, logvar=logvar, source=read_rollout_source(path),
                           **{k: rollout[k] for k in ("action", "reward", "terminated", "done")}))
        errors.append(error)
        for name, values in (("z", mu), ("h", h), ("c", c)):
            probe_inputs[name].append(values[ZOOM_STEPS:])
        speeds.append(read_rollout_truth(path)["speed"][ZOOM_STEPS:])
    scores, heads = load_stage_script("04_train_rnn.py").evaluate(mdrnn, SeriesEpisodes(series), seed, torch.device("cpu"))
    row = {"V reconstruction": f"{np.concatenate(errors).mean():.1f}", "M z NLL, steps 0-99": f"{scores['nll_first_100']:.3f}",
           "M z NLL": f"{scores['nll']:.3f}", "reward MSE": f"{heads['reward_mse']:.3f}", "tile AUC": f"{heads['tile_auc']:.3f}",
           "action error": f"{scores['action']:.3f}" if "action" in scores else "-"}
    for features in FEATURES:
        xs = [np.hstack([probe_inputs[name][e] for name in features.split(", ")]) for e in range(len(speeds))]
        row[f"speed R^2 from {features}"] = str(cross_validated_probe(xs, speeds, folds, seed))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollout-dir", default="data/large/driver", help="a good driver's episodes (01 --policy)")
    parser.add_argument("--checkpoint-dirs", nargs="+", required=True, help="folders with vae.pt and mdrnn.pt")
    parser.add_argument("--episodes", type=int, default=0, help="the first N episodes of --rollout-dir (0: all)")
    parser.add_argument("--frame-stride", type=int, default=10, help="V's reconstruction is scored on every k-th frame")
    parser.add_argument("--folds", type=int, default=5, help="outer (and inner) folds of the speed probe, over episodes")
    parser.add_argument("--seed", type=int, default=0, help="z samples and folds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    files = require_episodes(args.rollout_dir, "01_generate_data.py --policy")
    files = files[:args.episodes] if args.episodes else files
    rows = {folder: measure(Path(folder), files, args.frame_stride, args.folds, args.seed) for folder in args.checkpoint_dirs}
    columns = list(next(iter(rows.values())))
    actions = np.concatenate([np.load(path, allow_pickle=False)["action"] for path in files])  # (read_rollout checked them)
    print(f"{len(files)} episodes of {args.rollout_dir}; speed probes: {args.folds} folds over episodes, held-out R^2 mean ± std; "
          f"the driver's actions vary by {actions.var(axis=0).sum():.3f} (summed variance: the action error of their mean)")
    print("| world model | " + " | ".join(columns) + " |\n" + "|---" * (len(columns) + 1) + "|")
    for folder, row in rows.items():
        print(f"| {folder} | " + " | ".join(row[c] for c in columns) + " |")


if __name__ == "__main__":
    run_stage(main)
