"""The dream viewer: a dreamed episode decoded by V's decoder, next to the real episode it
started from, as a GIF.

The controller drives a real track; the dream starts from V's latent of that track's first
frame and is driven by the same controller. Each GIF frame shows what C saw on the track
(left) and V's decoding of the dreamed z (right), with the step, the return so far and the
actions.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldmodels.controller import LinearControllers
from worldmodels.dream import DreamBatch
from worldmodels.env import make_env
from worldmodels.frames import frames_to_tensor_layout, preprocess_frame
from worldmodels.mdrnn import MDNRNN
from worldmodels.pictures import captioned, save_gif, save_png, side_by_side
from worldmodels.rollout import Agent
from worldmodels.vae import ConvVAE

STILLS = 4  # GIF frames also saved as a PNG, evenly spaced (a README can show them)


@dataclass
class Recording:
    frames: np.ndarray  # uint8 [T, 64, 64, 3]: what C saw at each step (for a dream, V's decoding of z_t)
    actions: np.ndarray  # float32 [T, 3]
    rewards: np.ndarray  # float32 [T]
    ended: bool  # the episode ended (terminated or the dream's done) before the step limit


@torch.no_grad()
def record_real(vae: ConvVAE, mdrnn: MDNRNN, params: np.ndarray, track_seed: int, steps: int, use_hidden: bool = True,
                fast_render: bool = True) -> Recording:
    """Controller ``params`` [P] drives track ``track_seed`` for up to ``steps`` steps."""
    env = make_env(steps, fast_render)
    agent = Agent(vae, mdrnn, params[None], use_hidden)
    frames, actions, rewards, terminated = [], [], [], False
    try:
        frame, _ = env.reset(seed=track_seed)
        for _ in range(steps):
            frames.append(preprocess_frame(frame))
            actions.append(agent.act(frames[-1][None], np.ones(1, dtype=bool))[0])
            frame, reward, terminated, truncated, _ = env.step(actions[-1])
            rewards.append(reward)
            if terminated or truncated:
                break
    finally:
        env.close()
    return Recording(np.stack(frames), np.stack(actions), np.asarray(rewards, np.float32), terminated)


@torch.no_grad()
def record_dream(vae: ConvVAE, mdrnn: MDNRNN, params: np.ndarray, z0: np.ndarray, dream_seed: int, temperature: float,
                 steps: int, use_hidden: bool = True) -> Recording:
    """Controller ``params`` [P] drives a dream from latent ``z0`` [Z] for up to ``steps`` steps."""
    dream = DreamBatch(mdrnn, torch.as_tensor(z0, dtype=torch.float32)[None], [dream_seed], temperature)
    inputs = dream.features.shape[1] if use_hidden else mdrnn.z_size
    controller = LinearControllers(torch.as_tensor(params, dtype=torch.float32)[None], inputs)
    latents, actions, rewards, done = [], [], [], False
    for _ in range(steps):
        latents.append(dream.z[0].clone())
        action = controller(dream.features[:, :inputs])
        reward, ended = dream.step(action)
        actions.append(action[0].numpy())
        rewards.append(reward.item())
        done = bool(ended[0])
        if done:
            break
    decoded = vae.decode(torch.stack(latents)).numpy().transpose(0, 2, 3, 1)
    return Recording((decoded * 255).round().astype(np.uint8), np.stack(actions), np.asarray(rewards, np.float32), done)


def first_latent(vae: ConvVAE, frame: np.ndarray) -> np.ndarray:
    """V's mu [Z] of a preprocessed frame [64, 64, 3]: where a dream of that track starts."""
    with torch.no_grad():
        return vae.encode(torch.as_tensor(frames_to_tensor_layout(frame[None])))[0][0].numpy()


def _panel(recording: Recording, t: int, title: str, scale: int) -> np.ndarray:
    last = min(t, len(recording.rewards) - 1)
    steer, gas, brake = recording.actions[last]
    status = " (ended)" if t > last and recording.ended else ""
    lines = [f"{title}{status}", f"step {last + 1}  return {recording.rewards[: last + 1].sum():.1f}",
             f"steer {steer:+.2f} gas {gas:.2f} brake {brake:.2f}"]
    return captioned(recording.frames[last], lines, scale)


def write_dream_vs_real(path: str | Path, vae: ConvVAE, mdrnn: MDNRNN, params: np.ndarray, track_seed: int,
                        temperature: float, steps: int = 300, every: int = 2, scale: int = 3, use_hidden: bool = True,
                        fast_render: bool = True) -> tuple[Recording, Recording]:
    """Drive track ``track_seed`` and a dream from its first frame for ``steps`` steps each,
    and write every ``every``-th step side by side as a GIF at 50 / every frames per second
    (real time: CarRacing runs at 50 steps/s), and STILLS of those frames stacked as a PNG
    beside it (same name, .png). Returns (real, dream)."""
    real = record_real(vae, mdrnn, params, track_seed, steps, use_hidden, fast_render)
    dream = record_dream(vae, mdrnn, params, first_latent(vae, real.frames[0]), track_seed, temperature, steps, use_hidden)
    length = max(len(real.rewards), len(dream.rewards))
    frames = [side_by_side([_panel(real, t, f"real track {track_seed}", scale), _panel(dream, t, f"dream, tau {temperature}", scale)])
              for t in range(0, length, every)]
    save_gif(path, frames, fps=50 / every)
    stills = np.linspace(0, len(frames) - 1, min(STILLS, len(frames))).round().astype(int)
    save_png(Path(path).with_suffix(".png"), np.concatenate([frames[i] for i in stills], axis=0))
    return real, dream
