"""Feeding V and M: streamed frames for V, whole encoded episodes for M.

V's data (2M frames, 24.6 GB as uint8 at paper scale) never sits in memory whole: each
epoch visits the episodes in a seeded random order, in groups of ``buffer_episodes``; a
group's frames are shuffled together and served in batches while a background thread
loads the next group. Memory stays at about two groups (the one being served and the next),
briefly three while the next is shuffled, whatever the dataset's size.
"""

import sys
import threading
from pathlib import Path
from queue import Queue
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.episodes import driven_by_agent, read_rollout_frames
from worldmodels.errors import DataError
from worldmodels.frames import FRAME_SIZE


def split_episodes(files: list[Path], held_out_fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic split of sorted files: the last ``held_out_fraction`` are held out
    (at least one when there are two or more files)."""
    files = sorted(files)
    held_out = int(round(len(files) * held_out_fraction))
    if held_out_fraction > 0 and len(files) >= 2:
        held_out = max(held_out, 1)
    held_out = min(held_out, len(files) - 1)
    return files[: len(files) - held_out], files[len(files) - held_out :]


def strided_length(length: int, stride: int, offset: int) -> int:
    """How many of an episode's ``length`` frames ``frames[offset::stride]`` keeps."""
    return len(range(offset, length, stride))


def _load_group(files: list[Path], rng: np.random.Generator, skip_bad: bool, stride: int = 1, offset: int = 0) -> np.ndarray:
    """The frames of ``files`` in one array (every ``stride``-th of each episode from ``offset``),
    shuffled: each episode is copied once, straight to its random positions (no concatenated
    copy to permute afterwards)."""
    episodes = []
    for path in files:
        try:
            episodes.append(read_rollout_frames(path)[offset::stride])
        except DataError as error:
            if not skip_bad:
                raise
            tqdm.write(f"warning: skipping {error}", file=sys.stderr)
    positions = rng.permutation(sum(len(frames) for frames in episodes))
    group = np.empty((len(positions), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    start = 0
    for frames in episodes:
        group[positions[start : start + len(frames)]] = frames
        start += len(frames)
    return group


def stream_frame_batches(
    files: list[Path], batch_size: int, buffer_episodes: int, seed: int, drop_last: bool = True, skip_bad: bool = False,
    stride: int = 1, offset: int = 0,
) -> Iterator[np.ndarray]:
    """Yield uint8 [batch_size, 64, 64, 3] batches covering every frame of ``files`` once (with
    ``stride`` > 1: every stride-th frame of each episode from ``offset``, so ``stride`` calls
    with offsets 0 .. stride - 1 cover every frame once), in an order fixed by ``seed``. The
    training loop only slices batches; loading, decompressing and shuffling happen in a
    background thread. A file whose frames cannot be read raises its DataError or, with
    ``skip_bad``, is left out with a warning."""
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    groups = [order[i : i + buffer_episodes] for i in range(0, len(order), buffer_episodes)]
    loaded: Queue = Queue(maxsize=1)

    def load_all() -> None:
        try:
            for group in groups:
                loaded.put(_load_group(group, rng, skip_bad, stride, offset))
                loaded.join()  # load the next group only once this one is being served
            loaded.put(None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            loaded.put(error)

    threading.Thread(target=load_all, daemon=True).start()
    carry = np.zeros((0, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)  # a group's last partial batch
    while (frames := loaded.get()) is not None:
        loaded.task_done()
        if isinstance(frames, BaseException):
            raise frames
        start = min(batch_size - len(carry), len(frames)) if len(carry) else 0
        if len(carry):
            carry = np.concatenate([carry, frames[:start]])
            if len(carry) == batch_size:
                yield carry
                carry = carry[:0]
        whole = start + (len(frames) - start) // batch_size * batch_size
        for i in range(start, whole, batch_size):
            yield frames[i : i + batch_size]
        if whole < len(frames):
            carry = np.concatenate([carry, frames[whole:]])  # a copy: the group itself can be freed
    if len(carry) and not drop_last:
        yield carry


class SeriesEpisodes:
    """Encoded episodes (the arrays of series files) in memory (small: 2M steps are about
    0.3 GB), served to M as whole episodes from their first step.

    An epoch is one pass: the episodes in a seeded random order, ``batch_size`` at a time
    (``epoch_batches``); each batch is cut along time into chunks of ``seq_len`` steps
    (``time_chunks``) through which M carries its hidden state, so every step of every
    episode is trained once per epoch, with the history it has in a dream, the first step
    included.

    A batch of episodes (``sample``) gives, for t in [0, T) (T the longest of them):
      z_t = mu + sigma * eps (sampled on every call), action, reward, terminated,
      next z = the same at t + 1, and three masks: ``step_mask`` (the step exists),
      ``next_mask`` (its next frame exists; the last step of an episode has none) and
      ``driven`` (the step exists and an agent drove its episode: what M's action head learns).

    reward_floor: rewards below it are served as it (None: as recorded), so that the -100 of
    leaving the playfield, which also ends the episode (the done head's job), does not swing
    a reward head trained by squared error.
    """

    def __init__(self, episodes: list[dict[str, np.ndarray]], reward_floor: float | None = None):
        self.lengths = np.array([len(e["action"]) for e in episodes])
        self.z_size = episodes[0]["mu"].shape[1]
        column = lambda key: [np.asarray(e[key], dtype=np.float32) for e in episodes]
        self.mu, self.logvar = column("mu"), column("logvar")
        self.action, self.reward, self.terminated = column("action"), column("reward"), column("terminated")
        self.driven = np.array([driven_by_agent(e.get("source", "")) for e in episodes])
        if reward_floor is not None:
            self.reward = [np.maximum(reward, np.float32(reward_floor)) for reward in self.reward]

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def epoch_batches(self, batch_size: int, seed: int) -> list[np.ndarray]:
        """The episode indices of each batch of an epoch: all episodes once, in an order
        fixed by ``seed``."""
        order = np.random.default_rng(seed).permutation(len(self.lengths))
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def sample(self, episodes: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Whole episodes, padded to the longest (see the class docstring): z, next_z
        [B, T, Z]; action [B, T, 3]; reward, terminated, step_mask, next_mask, driven [B, T]."""
        batch, steps = len(episodes), int(self.lengths[episodes].max())
        z = np.zeros((batch, steps, self.z_size), dtype=np.float32)
        out = {k: np.zeros((batch, steps) + shape, dtype=np.float32) for k, shape in
               (("action", (3,)), ("reward", ()), ("terminated", ()), ("step_mask", ()), ("next_mask", ()), ("driven", ()))}
        for row, e in enumerate(episodes):
            n = self.lengths[e]
            z[row, :n] = self.mu[e] + np.exp(0.5 * self.logvar[e]) * rng.standard_normal(self.mu[e].shape, dtype=np.float32)
            out["action"][row, :n] = self.action[e]
            out["reward"][row, :n] = self.reward[e]
            out["terminated"][row, :n] = self.terminated[e]
            out["step_mask"][row, :n] = 1
            out["next_mask"][row, : n - 1] = 1
            out["driven"][row, :n] = self.driven[e]
        tensors = {k: torch.from_numpy(v) for k, v in out.items()}
        tensors["z"] = torch.from_numpy(z)
        tensors["next_z"] = torch.from_numpy(np.concatenate([z[:, 1:], np.zeros_like(z[:, :1])], axis=1))
        return tensors


def time_chunks(batch: dict[str, torch.Tensor], seq_len: int) -> list[dict[str, torch.Tensor]]:
    """A batch of whole episodes [B, T, ...] cut along time into chunks of ``seq_len`` steps
    (the last one shorter), in order."""
    steps = batch["step_mask"].shape[1]
    return [{k: v[:, start : start + seq_len] for k, v in batch.items()} for start in range(0, steps, seq_len)]
