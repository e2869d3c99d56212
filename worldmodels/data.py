"""Feeding V and M: streamed frames for V, sequence windows for M.

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

from worldmodels.episodes import read_rollout_frames
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


def _load_group(files: list[Path], rng: np.random.Generator, skip_bad: bool) -> np.ndarray:
    """The frames of ``files`` in one array, shuffled: each episode is copied once, straight
    to its random positions (no concatenated copy to permute afterwards)."""
    episodes = []
    for path in files:
        try:
            episodes.append(read_rollout_frames(path))
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
    files: list[Path], batch_size: int, buffer_episodes: int, seed: int, drop_last: bool = True, skip_bad: bool = False
) -> Iterator[np.ndarray]:
    """Yield uint8 [batch_size, 64, 64, 3] batches covering every frame of ``files`` once,
    in an order fixed by ``seed``. The training loop only slices batches; loading,
    decompressing and shuffling happen in a background thread. A file whose frames cannot
    be read raises its DataError or, with ``skip_bad``, is left out with a warning."""
    rng = np.random.default_rng(seed)
    order = [files[i] for i in rng.permutation(len(files))]
    groups = [order[i : i + buffer_episodes] for i in range(0, len(order), buffer_episodes)]
    loaded: Queue = Queue(maxsize=1)

    def load_all() -> None:
        try:
            for group in groups:
                loaded.put(_load_group(group, rng, skip_bad))
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


class SeriesWindows:
    """Encoded episodes (the arrays of series files) in memory (small: 2M steps are about
    0.3 GB) and random windows of ``seq_len`` steps for M.

    A window starting at t0 gives, for s in [0, seq_len):
      z_t = mu + sigma * eps at t0 + s (resampled on every call), action, reward, terminated,
      next z = the same at t0 + s + 1 and two masks: ``step_mask`` (the step exists) and
      ``next_mask`` (its next frame exists; the last step of an episode has none).
    """

    def __init__(self, episodes: list[dict[str, np.ndarray]]):
        self.lengths = np.array([len(e["action"]) for e in episodes])
        self.z_size = episodes[0]["mu"].shape[1]
        column = lambda key: [np.asarray(e[key], dtype=np.float32) for e in episodes]
        self.mu, self.logvar = column("mu"), column("logvar")
        self.action, self.reward, self.terminated = column("action"), column("reward"), column("terminated")

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def batch(self, batch_size: int, seq_len: int, rng: np.random.Generator, episodes: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        """Random windows (or, with ``episodes``, windows from the start of those episodes)."""
        if episodes is None:
            episodes = rng.integers(len(self.lengths), size=batch_size)
            starts = rng.integers(0, np.maximum(self.lengths[episodes] - 1, 1))
        else:
            starts = np.zeros(len(episodes), dtype=np.int64)
        batch = len(episodes)
        z = np.zeros((batch, seq_len + 1, self.z_size), dtype=np.float32)
        out = {k: np.zeros((batch, seq_len) + shape, dtype=np.float32) for k, shape in
               (("action", (3,)), ("reward", ()), ("terminated", ()), ("step_mask", ()), ("next_mask", ()))}
        for row, (e, t0) in enumerate(zip(episodes, starts)):
            n = min(seq_len + 1, self.lengths[e] - t0)
            mu, logvar = self.mu[e][t0 : t0 + n], self.logvar[e][t0 : t0 + n]
            z[row, :n] = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape, dtype=np.float32)
            m = min(seq_len, n)
            out["action"][row, :m] = self.action[e][t0 : t0 + m]
            out["reward"][row, :m] = self.reward[e][t0 : t0 + m]
            out["terminated"][row, :m] = self.terminated[e][t0 : t0 + m]
            out["step_mask"][row, :m] = 1
            out["next_mask"][row, : n - 1] = 1
        tensors = {k: torch.from_numpy(v) for k, v in out.items()}
        tensors["z"], tensors["next_z"] = torch.from_numpy(z[:, :-1]), torch.from_numpy(z[:, 1:])
        return tensors
