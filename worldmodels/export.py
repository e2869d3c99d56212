"""Ship an agent: its V, M and C as weights only (float16 with --float16), and the first
latents its dreams start from, in a folder that 05_train_controller.py reads as a
--checkpoint-dir (and, for --dream, as a --series-dir).

    python -m worldmodels.export checkpoints/iterative/round3 pretrained/dream --rollout-dir data/iterative/rollout --float16

Rounding V and M to float16 changes their weights, hence their fingerprints: M is saved as
made from the rounded V, C as made for the rounded V and M, and the first latents are encoded
again by the rounded V, so everything in the folder belongs together. Score the exported
agent again (05_train_controller.py --evaluate) before trusting that the score held.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.atomic import prepare_output
from worldmodels.checkpoints import (
    CONTROLLER_FILE,
    MDRNN_FILE,
    VAE_FILE,
    controller_config,
    controller_inputs,
    fingerprint,
    load_controller_for,
    load_vae_and_mdrnn,
    save_controller,
    save_model,
)
from worldmodels.cli import run_stage
from worldmodels.errors import DataError
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_frame_kind_of, read_rollout_frames, require_episodes, write_initial_latents
from worldmodels.frames import frames_to_tensor_layout


@torch.no_grad()
def export_agent(source: str | Path, destination: str | Path, rollout_dir: str | Path, float16: bool) -> Path:
    """Copy the agent of ``source`` to ``destination`` (see the module docstring); returns it."""
    source, destination = Path(source), prepare_output(destination, needed_bytes=40 * 2**20)
    vae, mdrnn = load_vae_and_mdrnn(source / VAE_FILE, source / MDRNN_FILE)
    controller, config = load_controller_for(source / CONTROLLER_FILE, vae, mdrnn)
    rollouts = require_episodes(rollout_dir, "01_generate_data.py")
    if (kind := read_frame_kind_of(rollouts, rollout_dir, skip_bad=False)) != vae.frame_kind:
        raise DataError(f"{rollout_dir}: holds {kind} frames, and the V of {source} sees {vae.frame_kind} frames; give episodes "
                        "of its kind, whose first frames its dreams start from")
    dtype = torch.float16 if float16 else None
    # rounded as a loader will see them
    vae, mdrnn = (model.to(dtype).float() if float16 else model for model in (vae, mdrnn))
    save_model(destination / VAE_FILE, vae.kind, vae, dtype=dtype)
    save_model(destination / MDRNN_FILE, "mdrnn", mdrnn, made_from={"vae": fingerprint(vae)}, dtype=dtype)
    extra = {k: v for k, v in controller.items() if k not in ("kind", "config", "params", "generation")}
    save_controller(destination / CONTROLLER_FILE, controller["params"].numpy(), controller_config(vae, mdrnn, controller_inputs(config)),
                    controller["generation"], **extra)
    # a copy of each first frame, not a view that would keep its whole episode in memory (2,000 episodes: 25 GB)
    firsts = [read_rollout_frames(path)[:1].copy() for path in tqdm(rollouts, desc="first frames")]
    mu, logvar = vae.encode(torch.from_numpy(frames_to_tensor_layout(np.concatenate(firsts))))
    write_initial_latents(destination / INITIAL_LATENTS_FILE, [p.stem for p in rollouts], mu.numpy(), logvar.numpy(), fingerprint(vae))
    return destination


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a checkpoint folder with vae.pt, mdrnn.pt and controller.pt that belong together")
    parser.add_argument("destination", help="the folder to write (e.g. pretrained/dream)")
    parser.add_argument("--rollout-dir", required=True, help="the episodes whose first frames the dreams start from")
    parser.add_argument("--float16", action="store_true", help="store V's and M's weights as float16 (half the size)")
    args = parser.parse_args(argv)
    destination = export_agent(args.source, args.destination, args.rollout_dir, args.float16)
    sizes = {p.name: p.stat().st_size for p in sorted(destination.iterdir()) if p.is_file() and not p.name.startswith(".")}
    print(f"wrote {destination}: " + ", ".join(f"{name} {size / 2**20:.2f} MB" for name, size in sizes.items()))
    print(f"next: python 05_train_controller.py --evaluate --checkpoint-dir {destination}")


if __name__ == "__main__":
    run_stage(main)
