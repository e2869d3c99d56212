"""A dream inside M behind gymnasium's interface (``WorldModels/CarRacingDream-v0``).

Observation: float32 [Z + H], the [z, h] C sees; action: CarRacing-v3's continuous
[steering, gas, brake]; reward and end: M's reward and done heads. It runs the same engine
as stage 05's dreams (worldmodels/dream.py, ``DreamBatch``, a batch of one), from a real first
latent picked with the env's RNG, so the same seed gives the same dream.

Made from files (gymnasium.make, a spec, its JSON or a pickled env all rebuild it from
them): ``checkpoint_dir`` holds V and M (vae.pt, mdrnn.pt; default: the shipped
pretrained/ folder) and ``series_dir`` the first latents (initial_latents.npz; default: the
checkpoint folder, as in pretrained/). ``DreamEnv.from_models`` makes one from models in
memory instead.

Rendering decodes z with V: ``render_mode="rgb_array"`` returns uint8 [64, 64, 3] of the kind
of frame V sees (``frame_kind``, frames.FRAME_KINDS: with "full", the indicator bar as V
imagines it), ``"human"`` shows it enlarged in a pygame window (imported only then).

Threads: a dream steps one small LSTM, which more torch threads only slow down (and when
other processes share the cores, many times over); a worker forked from a process that has
used torch's thread pool hangs in it. So the env runs its torch work on ``threads`` threads
(default 1) and gives the process its own setting back after each call.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import EzPickle

from worldmodels.checkpoints import MDRNN_FILE, VAE_FILE, fingerprint, load_vae_and_mdrnn
from worldmodels.constants import ACTION_HIGH, ACTION_LOW, ACTION_SIZE, MAX_EPISODE_STEPS
from worldmodels.dream import DreamBatch
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents
from worldmodels.errors import DataError
from worldmodels.mdrnn import MDNRNN
from worldmodels.pictures import enlarge
from worldmodels.vision import VisionModel, decode_frames
from worldmodels.window import PictureWindow

PRETRAINED_DIR = Path(__file__).resolve().parents[2] / "pretrained"  # the shipped weights, beside the package
TEMPERATURE = 1.15  # stage 05's dream temperature
HUMAN_SCALE = 6  # the 64x64 frame in a 384x384 window


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads, then restore the process's setting."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class DreamEnv(gym.Env, EzPickle):
    """One dream in M. See the module docstring; sizes: Z = M's z_size, H = M's hidden_size."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 50}

    def __init__(self, checkpoint_dir: str | Path = PRETRAINED_DIR, series_dir: str | Path | None = None,
                 temperature: float = TEMPERATURE, max_steps: int = MAX_EPISODE_STEPS, render_mode: str | None = None,
                 threads: int | None = 1):
        EzPickle.__init__(self, checkpoint_dir=str(checkpoint_dir), series_dir=None if series_dir is None else str(series_dir),
                          temperature=temperature, max_steps=max_steps, render_mode=render_mode, threads=threads)
        checkpoint_dir = Path(checkpoint_dir)
        if not checkpoint_dir.is_dir():
            where = " (the shipped weights come with a clone of the repository)" if checkpoint_dir == PRETRAINED_DIR else ""
            raise DataError(f"{checkpoint_dir}: no such folder{where}; pass checkpoint_dir= a folder with {VAE_FILE} and {MDRNN_FILE}")
        with torch_threads(threads):
            vae, mdrnn = load_vae_and_mdrnn(checkpoint_dir / VAE_FILE, checkpoint_dir / MDRNN_FILE)
        latents = read_initial_latents(Path(series_dir or checkpoint_dir) / INITIAL_LATENTS_FILE, mdrnn.z_size, fingerprint(vae))["mu"]
        self._set_up(mdrnn, latents, vae, temperature, max_steps, render_mode, threads)

    @classmethod
    def from_models(cls, mdrnn: MDNRNN, initial_latents: np.ndarray, vae: VisionModel | None = None,
                    temperature: float = TEMPERATURE, max_steps: int = MAX_EPISODE_STEPS, render_mode: str | None = None,
                    threads: int | None = 1) -> "DreamEnv":
        """A dream in these models: initial_latents [N, Z] real first latents; vae (optional)
        only renders. It has no files to be rebuilt from, so it cannot be pickled."""
        env = cls.__new__(cls)
        env._set_up(mdrnn, initial_latents, vae, temperature, max_steps, render_mode, threads)
        return env

    def _set_up(self, mdrnn: MDNRNN, initial_latents: np.ndarray, vae: VisionModel | None, temperature: float, max_steps: int,
                render_mode: str | None, threads: int | None) -> None:
        latents = np.asarray(initial_latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != mdrnn.z_size or len(latents) == 0:
            raise ValueError(f"initial_latents must be [N, {mdrnn.z_size}] with N >= 1, got {latents.shape}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not (isinstance(max_steps, int) and max_steps >= 1):
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if render_mode is not None and vae is None:
            raise ValueError("rendering decodes z with V: pass vae= (or make the env from a checkpoint folder)")
        if threads is not None and not (isinstance(threads, int) and threads >= 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.mdrnn, self.vae, self.initial_latents = mdrnn, vae, latents
        self.frame_kind = vae.frame_kind if vae is not None else None  # what render shows: V's kind of frame (no V: no render)
        self.temperature, self.max_steps, self.render_mode, self.threads = temperature, max_steps, render_mode, threads
        size = mdrnn.z_size + mdrnn.hidden_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), dtype=np.float32)
        self.action_space = gym.spaces.Box(np.array(ACTION_LOW, dtype=np.float32), np.array(ACTION_HIGH, dtype=np.float32),
                                           (ACTION_SIZE,), dtype=np.float32)
        self.dream: DreamBatch | None = None
        self._window = None

    def __getstate__(self) -> dict:
        if "_ezpickle_args" not in self.__dict__:
            raise TypeError("a DreamEnv made from models in memory cannot be pickled; make it from files "
                            "(DreamEnv(checkpoint_dir=..., series_dir=...) or gymnasium.make) to pickle it")
        return EzPickle.__getstate__(self)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        start = int(self.np_random.integers(len(self.initial_latents)))
        with torch_threads(self.threads):
            self.dream = DreamBatch(self.mdrnn, torch.from_numpy(self.initial_latents[start : start + 1]),
                                    [int(self.np_random.integers(2**62))], self.temperature,
                                    dropout=True)  # an M trained with dropout dreams with its masks, as in stage 05
        if self.render_mode == "human":
            self.render()
        return self._observation(), {"start": start}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.dream is None:
            raise RuntimeError("DreamEnv: call reset() before step()")
        action = np.clip(self._checked(action), self.action_space.low, self.action_space.high)
        with torch_threads(self.threads):
            reward, done = self.dream.step(torch.from_numpy(action)[None])
        truncated = self.dream.t >= self.max_steps and not bool(done[0])
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(reward[0]), bool(done[0]), truncated, {}

    @staticmethod
    def _checked(action) -> np.ndarray:
        """The action as float32 [3], or a ValueError that says what is wrong with it."""
        try:
            array = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"DreamEnv.step: the action must be {ACTION_SIZE} numbers [steering, gas, brake], "
                             f"got {action!r}") from None
        if array.shape != (ACTION_SIZE,):
            raise ValueError(f"DreamEnv.step: the action must have shape ({ACTION_SIZE},) [steering, gas, brake], "
                             f"got shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"DreamEnv.step: the action holds NaN or inf: {array.tolist()}")
        return array

    def _observation(self) -> np.ndarray:
        return self.dream.features[0].numpy().astype(np.float32)

    def render(self) -> np.ndarray | None:
        """rgb_array: V's decoding of the dream's z, uint8 [64, 64, 3]; human: the same in a window."""
        if self.render_mode is None:
            gym.logger.warn("DreamEnv.render() without a render_mode: make the env with render_mode='rgb_array' or 'human'")
            return None
        if self.dream is None:
            raise RuntimeError("DreamEnv: call reset() before render()")
        with torch_threads(self.threads):
            frame = decode_frames(self.vae, self.dream.z)[0]
        if self.render_mode == "rgb_array":
            return frame
        self._show(enlarge(frame, HUMAN_SCALE))
        return None

    def _show(self, picture: np.ndarray) -> None:
        if self._window is None:
            self._window = PictureWindow("World Models: a dream in M, decoded by V", self.metadata["render_fps"])
        self._window.show(picture)  # closing the window does not end the episode: gymnasium's envs go on too

    def close(self) -> None:
        if getattr(self, "_window", None) is not None:
            self._window.close()
            self._window = None
