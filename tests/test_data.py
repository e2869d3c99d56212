"""Streaming V's frames: every frame once per epoch, in an order fixed by the seed."""

import numpy as np
import pytest

from worldmodels.data import stream_frame_batches
from worldmodels.episodes import write_rollout
from worldmodels.errors import DataError


def write_numbered_episodes(folder, lengths: list[int]) -> list:
    """Episodes whose frames carry their own number (pixel [0, 0, 0] high byte, [0, 0, 1] low)."""
    paths, number = [], 0
    for e, length in enumerate(lengths):
        obs = np.zeros((length, 64, 64, 3), dtype=np.uint8)
        for t in range(length):
            obs[t, 0, 0, :2] = divmod(number, 256)
            number += 1
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        path = folder / f"ep{e:08d}.npz"
        write_rollout(path, obs, np.zeros((length, 3)), np.zeros(length), np.zeros(length, dtype=bool), done)
        paths.append(path)
    return paths


def numbers(batch: np.ndarray) -> list[int]:
    return (batch[:, 0, 0, 0].astype(int) * 256 + batch[:, 0, 0, 1]).tolist()


@pytest.fixture
def episodes(tmp_path):
    return write_numbered_episodes(tmp_path, [7, 5, 9, 3, 300])  # 324 frames


@pytest.mark.parametrize("buffer_episodes", [1, 2, 5])
def test_every_frame_is_served_once_in_full_batches(episodes, buffer_episodes):
    batches = list(stream_frame_batches(episodes, 4, buffer_episodes, seed=0, drop_last=False))
    assert all(len(b) == 4 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 4
    served = [n for b in batches for n in numbers(b)]
    assert sorted(served) == list(range(324))
    kept = list(stream_frame_batches(episodes, 5, buffer_episodes, seed=0, drop_last=True))
    assert len(kept) == 324 // 5 and all(len(b) == 5 for b in kept)


def test_the_order_is_fixed_by_the_seed_and_shuffled_across_episodes(episodes):
    order = lambda seed: [n for b in stream_frame_batches(episodes, 4, 2, seed=seed, drop_last=False) for n in numbers(b)]
    assert order(3) == order(3)
    assert order(3) != order(4)
    served = order(3)
    assert served[:20] != list(range(served[0], served[0] + 20))  # frames are shuffled, not served episode by episode


def test_a_corrupt_file_stops_the_stream_with_its_name(episodes):
    episodes[2].write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=episodes[2].name):
        list(stream_frame_batches(episodes, 4, 1, seed=0))
