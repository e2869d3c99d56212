"""A task-aware V (02_train_vae.py --task-weight W --task-from MDRNN): V learns what the task
needs, not only what the frame shows.

V alone learns to reconstruct pixels, and a few pixels can matter most: the speed gauge of
the full frame is under two of V's 64 rows. Here V trains on stretches of consecutive steps
of its episodes, and its own loss (reconstruction and KL) is joined by M's reward and done
losses, W times, which reach V's encoder through the z that M reads: V is pushed to encode
what M needs to predict the reward and the end of an episode. M trains beside it on its whole
loss, but its z NLL sees z detached, from its input to its target, so V cannot make z
trivially predictable to lower it. M's weights travel in V's training checkpoint (so a stop
resumes) and are then left behind: stage 04 trains M on the new V's series as usual.

Cost: M's state starts at zero on every stretch (STRETCH steps), so its first steps there are
predicted with less history than in a dream; and the whole stretch passes through V, so an
epoch costs what one of plain V training costs on the same frames.
"""

import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from worldmodels.episodes import read_rollout
from worldmodels.errors import DataError
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.mdrnn import MDNRNN, mdrnn_loss
from worldmodels.vision import TrainingSettings, VisionModel
from worldmodels.vision.vae import row_weights, sample_latent, vae_loss

STRETCH = 50  # consecutive steps M reads from a zero state in the joint loss
TASK_TERMS = ("task_reward", "task_done", "task_nll")  # M's losses in the joint step, for the log


def stretches_in(length: int, stride: int = 1, offset: int = 0) -> int:
    """How many whole stretches an episode of ``length`` steps gives (every ``stride``-th from ``offset``)."""
    return len(range(offset, length // STRETCH, stride))


def stream_stretch_batches(files: list[Path], stretches_per_batch: int, buffer_episodes: int, seed: int,
                           skip_bad: bool = False, stride: int = 1, offset: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Batches of ``stretches_per_batch`` stretches of STRETCH consecutive steps: obs uint8
    [B, L, 64, 64, 3]; action float32 [B, L, 3]; reward, terminated float32 [B, L]. Each
    episode is cut at an offset drawn from ``seed`` into whole stretches, of which every
    ``stride``-th from ``offset`` is kept (as 02 --frame-stride keeps frames), and the
    stretches of ``buffer_episodes`` episodes at a time are shuffled together."""
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    for start in range(0, len(order), buffer_episodes):
        stretches = []
        for path in order[start : start + buffer_episodes]:
            try:
                episode = read_rollout(path)
            except DataError as error:
                if not skip_bad:
                    raise
                print(f"warning: skipping {error}", file=sys.stderr)
                continue
            length = len(episode["action"])
            starts = range(int(rng.integers(length % STRETCH + 1)), length - STRETCH + 1, STRETCH)
            for first in starts[offset::stride]:
                stretches.append({key: episode[key][first : first + STRETCH] for key in ("obs", "action", "reward", "terminated")})
        order = rng.permutation(len(stretches))  # the few left over for a whole batch are drawn at random too
        for i in order[: len(order) - len(order) % stretches_per_batch].reshape(-1, stretches_per_batch):
            yield {key: np.stack([stretches[j][key] for j in i]).astype(np.uint8 if key == "obs" else np.float32)
                   for key in ("obs", "action", "reward", "terminated")}


def task_aware_loss(vae: VisionModel, mdrnn: MDNRNN, batch: dict[str, np.ndarray], settings: TrainingSettings,
                    task_weight: float, device: torch.device) -> dict[str, torch.Tensor]:
    """V's loss + task_weight x M's reward and done losses (which reach V's encoder) + M's
    z NLL on detached z (which does not), on a batch of stretches (stream_stretch_batches).
    returns "loss" (what to minimise) and each term, scalars: V's loss, recon and kl per frame,
    M's per step."""
    obs = torch.from_numpy(batch["obs"])
    stretches, steps = obs.shape[:2]
    x = torch.from_numpy(frames_to_tensor_layout(obs.flatten(0, 1).numpy())).to(device)
    mu, logvar = vae.encode(x)
    z = sample_latent(mu, logvar)
    v_loss, recon, kl = vae_loss(x, vae.decode(z), mu, logvar, settings.kl_tolerance, row_weights(vae.frame_kind, settings.bar_weight))
    z = z.view(stretches, steps, -1)
    next_mask = torch.ones(stretches, steps, device=device)
    next_mask[:, -1] = 0  # a stretch's last step has no next z in it
    sequences = {key: torch.from_numpy(batch[key]).to(device) for key in ("action", "reward", "terminated")} | {
        "step_mask": torch.ones(stretches, steps, device=device), "next_mask": next_mask,
        "next_z": torch.cat([z[:, 1:], torch.zeros_like(z[:, :1])], dim=1).detach()}
    dynamics = mdrnn_loss(mdrnn(z.detach(), sequences["action"])[0], sequences)  # M's NLL: V's z cannot be moved by it
    task = mdrnn_loss(mdrnn(z, sequences["action"])[0], sequences)  # reward and done: through z into V's encoder
    loss = v_loss + task_weight * (task["reward"] + task["done"]) + dynamics["nll"]
    return {"loss": loss, "recon": recon, "kl": kl, "task_reward": task["reward"], "task_done": task["done"],
            "task_nll": dynamics["nll"]}


def task_aware_step(vae: VisionModel, mdrnn: MDNRNN, optimizer: torch.optim.Optimizer, batch: dict[str, np.ndarray],
                    settings: TrainingSettings, task_weight: float, device: torch.device) -> dict[str, float]:
    """One update of V and M on the joint loss (task_aware_loss); returns each term summed over
    the batch's frames, and "frames", as stage 02's steps do."""
    terms = task_aware_loss(vae, mdrnn, batch, settings, task_weight, device)
    optimizer.zero_grad()
    terms["loss"].backward()
    optimizer.step()
    frames = batch["action"].shape[0] * batch["action"].shape[1]
    return {name: term.item() * frames for name, term in terms.items()} | {"frames": frames}
