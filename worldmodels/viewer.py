"""GIFs of the agent at work, each with a PNG of a few stills beside it.

Driving (``write_drive``): each frame shows the real frame C saw, V's reconstruction of it,
and M's prediction of it made one step earlier (the most likely z, decoded by V), with the
step, the return so far and the actions.

Dreaming (``write_dream_vs_real``): the controller drives a real track and a dream that
starts from V's latent of that track's first frame; each frame shows what C saw on the
track beside V's decoding of the dreamed z.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldmodels.controller import LinearControllers, controller_input_size
from worldmodels.dream import DreamBatch
from worldmodels.env import make_env
from worldmodels.frames import frame_preparer, frames_to_tensor_layout
from worldmodels.mdrnn import MDNRNN, most_likely_z
from worldmodels.pictures import GIF_COLOURS, captioned, save_gif, save_png, side_by_side, text_strip
from worldmodels.rollout import Agent
from worldmodels.vision import VisionModel, decode_frames

STILLS = 4  # GIF frames also saved as a PNG, evenly spaced (a README can show them)
NOTHING_YET = 128  # grey: M has predicted no frame before the first one


@dataclass
class Recording:
    frames: np.ndarray  # uint8 [T, 64, 64, 3]: what C saw at each step (for a dream, V's decoding of z_t)
    actions: np.ndarray  # float32 [T, 3]
    rewards: np.ndarray  # float32 [T]
    ended: bool  # the episode ended (terminated or the dream's done) before the step limit
    reconstructions: np.ndarray | None = None  # uint8 [T, 64, 64, 3], real episodes: V's decoding of its z_t
    predictions: np.ndarray | None = None  # uint8 [T, 64, 64, 3], real episodes: M's z_t predicted at t - 1, decoded
    total_return: float | None = None  # real episodes: the return of the whole drive, past the steps recorded


@dataclass
class DriveStep:
    observation: np.ndarray  # uint8 [96, 96, 3]: the env's frame, before preprocessing (with fast acting: [64, 64, 3])
    frame: np.ndarray  # uint8 [64, 64, 3]: what C saw
    action: np.ndarray  # float32 [3]
    reward: float
    z: torch.Tensor  # [Z]: V's latent of the frame
    next_z: torch.Tensor  # [Z]: M's most likely z for the next frame
    ended: bool  # the episode ended (terminated) with this step


@torch.no_grad()
def drive(vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, track_seed: int, steps: int, inputs: str = "zh",
          fast_render: bool = True, actions: np.ndarray | None = None, fast_acting: bool = False,
          bfloat16: bool | None = None) -> Iterator[DriveStep]:
    """Controller ``params`` [P] drives track ``track_seed`` for up to ``steps`` steps, one
    DriveStep at a time (the GIFs record them, --watch shows them live).

    actions: float32 [T, 3], the actions of an episode already driven (``EpisodeResults.actions``),
    replayed instead of C's, for up to T steps: the same physics, so the same drive and return as
    the scored one, while V and M run along it as they did then. fast_acting: the frames and V's
    encoder the agent used, in bfloat16 if ``bfloat16`` (``run_agent_episodes``)."""
    env = make_env(steps if actions is None else len(actions), fast_render, agent_frames=fast_acting, frame_kind=vae.frame_kind)
    prepare = frame_preparer(fast_acting, vae.frame_kind)
    agent = Agent(vae, mdrnn, params[None], inputs, fast_acting, bfloat16)
    active = np.ones(1, dtype=bool)
    try:
        observation, _ = env.reset(seed=track_seed)
        for t in range(steps if actions is None else len(actions)):
            frame = prepare(observation)
            taken = None if actions is None else actions[t : t + 1]
            chosen = agent.act(frame[None], active, taken=taken)[0]  # M advances with the action taken
            action = chosen if taken is None else taken[0]
            next_z = most_likely_z(agent.last_prediction["log_pi"], agent.last_prediction["mu"])[0]
            seen, z = observation, agent.last_z[0]
            observation, reward, terminated, truncated, _ = env.step(action)
            yield DriveStep(seen, frame, action, float(reward), z, next_z, bool(terminated))
            if terminated or truncated:
                break
    finally:
        env.close()


def record_real(vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, track_seed: int, steps: int, inputs: str = "zh",
                fast_render: bool = True, actions: np.ndarray | None = None, fast_acting: bool = False,
                bfloat16: bool | None = None) -> Recording:
    """Controller ``params`` [P] drives track ``track_seed`` (or replays ``actions``, see
    ``drive``) and the first ``steps`` steps are recorded, with V's reconstruction and M's
    one-step prediction of every frame; ``Recording.total_return`` sums the whole drive."""
    record, total = [], 0.0
    for step in drive(vae, mdrnn, params, track_seed, steps, inputs, fast_render, actions, fast_acting, bfloat16):
        total += step.reward
        if len(record) < steps:
            record.append(step)
    first = np.full((1, *record[0].frame.shape), NOTHING_YET, dtype=np.uint8)
    predicted = [step.next_z for step in record[:-1]]
    predictions = np.concatenate([first, decode_frames(vae, torch.stack(predicted))]) if predicted else first
    return Recording(np.stack([step.frame for step in record]), np.stack([step.action for step in record]),
                     np.asarray([step.reward for step in record], np.float32), record[-1].ended,
                     decode_frames(vae, torch.stack([step.z for step in record])), predictions, total)


@torch.no_grad()
def record_dream(vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, z0: np.ndarray, dream_seed: int, temperature: float,
                 steps: int, inputs: str = "zh", dropout: bool = False) -> Recording:
    """Controller ``params`` [P] drives a dream from latent ``z0`` [Z] for up to ``steps`` steps
    (dropout: with M's dropout masks, DreamBatch)."""
    dream = DreamBatch(mdrnn, torch.as_tensor(z0, dtype=torch.float32)[None], [dream_seed], temperature, dropout=dropout)
    input_size = controller_input_size(inputs, mdrnn.z_size, mdrnn.hidden_size)
    controller = LinearControllers(torch.as_tensor(params, dtype=torch.float32)[None], input_size)
    latents, actions, rewards, done = [], [], [], False
    for _ in range(steps):
        latents.append(dream.z[0].clone())
        action = controller(dream.controller_input(inputs))
        reward, ended = dream.step(action)
        actions.append(action[0].numpy())
        rewards.append(reward.item())
        done = bool(ended[0])
        if done:
            break
    return Recording(decode_frames(vae, torch.stack(latents)), np.stack(actions), np.asarray(rewards, np.float32), done)


def first_latent(vae: VisionModel, frame: np.ndarray) -> np.ndarray:
    """V's mu [Z] of a preprocessed frame [64, 64, 3]: where a dream of that track starts."""
    with torch.no_grad():
        return vae.encode(torch.as_tensor(frames_to_tensor_layout(frame[None])))[0][0].numpy()


def _status(recording: Recording, t: int) -> tuple[int, list[str]]:
    """The step shown at GIF frame t (the last one once the episode is over) and its lines."""
    last = min(t, len(recording.rewards) - 1)
    steer, gas, brake = recording.actions[last]
    return last, [f"step {last + 1}  return {recording.rewards[: last + 1].sum():.1f}", f"steer {steer:+.2f} gas {gas:.2f} brake {brake:.2f}"]


def _panel(recording: Recording, t: int, title: str, scale: int) -> np.ndarray:
    last, lines = _status(recording, t)
    status = " (ended)" if t > last and recording.ended else ""
    return captioned(recording.frames[last], [f"{title}{status}", *lines], scale)


def _save_gif_and_stills(path: str | Path, frames: list[np.ndarray], every: int) -> None:
    """The GIF at real speed (CarRacing runs at 50 steps/s) and STILLS of its frames stacked
    as a PNG beside it (same name, .png; the GIF's number of colours)."""
    save_gif(path, frames, fps=50 / every)
    stills = np.linspace(0, len(frames) - 1, min(STILLS, len(frames))).round().astype(int)
    save_png(Path(path).with_suffix(".png"), np.concatenate([frames[i] for i in stills], axis=0), colours=GIF_COLOURS)


def write_drive(path: str | Path, recording: Recording, title: str, every: int = 2, scale: int = 2) -> None:
    """A real episode (from record_real), every ``every``-th step: the frame, V's
    reconstruction and M's prediction of it side by side under the step, return and actions."""
    frames = []
    for t in range(0, len(recording.rewards), every):
        row = side_by_side([captioned(images[t], [name], scale) for images, name in
                            ((recording.frames, "what C sees"), (recording.reconstructions, "V's reconstruction"),
                             (recording.predictions, "M's prediction"))])
        _, lines = _status(recording, t)
        frames.append(np.concatenate([text_strip(row.shape[1], [title, "  ".join(lines)]), row]))
    _save_gif_and_stills(path, frames, every)


def write_dream_vs_real(path: str | Path, vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, track_seed: int,
                        temperature: float, steps: int = 300, every: int = 2, scale: int = 3, inputs: str = "zh",
                        fast_render: bool = True, dropout: bool = False) -> tuple[Recording, Recording]:
    """Drive track ``track_seed`` and a dream from its first frame for ``steps`` steps each,
    and write every ``every``-th step side by side as a GIF with stills (see
    _save_gif_and_stills). Returns (real, dream)."""
    real = record_real(vae, mdrnn, params, track_seed, steps, inputs, fast_render)
    dream = record_dream(vae, mdrnn, params, first_latent(vae, real.frames[0]), track_seed, temperature, steps, inputs, dropout)
    length = max(len(real.rewards), len(dream.rewards))
    frames = [side_by_side([_panel(real, t, f"real track {track_seed}", scale), _panel(dream, t, f"dream, tau {temperature}", scale)])
              for t in range(0, length, every)]
    _save_gif_and_stills(path, frames, every)
    return real, dream
