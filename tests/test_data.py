"""Feeding V and M: every frame (V) and every step of every episode (M) once per epoch, in an
order fixed by the seed."""

import os
import signal

import numpy as np
import pytest
import torch

from worldmodels.cli import run_stage
from worldmodels.data import stream_frame_batches
from worldmodels.episodes import write_rollout, write_series
from worldmodels.errors import DataError
from worldmodels.mdrnn import MDNRNN


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
        write_rollout(path, obs, np.zeros((length, 3)), np.zeros(length), np.zeros(length, dtype=bool), done, source="numbered")
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


def test_strided_epochs_cover_every_frame_once_over_stride_offsets(episodes):
    starts = np.cumsum([0, 7, 5, 9, 3])  # each episode's first frame number
    lengths = [7, 5, 9, 3, 300]
    served = []
    for offset in range(3):
        epoch = [n for b in stream_frame_batches(episodes, 4, 2, seed=offset, drop_last=False, stride=3, offset=offset)
                 for n in numbers(b)]
        expected = sorted(int(start) + t for start, length in zip(starts, lengths) for t in range(offset, length, 3))
        assert sorted(epoch) == expected  # every 3rd frame of each episode, from the offset
        served += epoch
    assert sorted(served) == list(range(324))


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


# --- M's data: whole episodes, every step once per epoch ------------------------------------

def write_labelled_series(folder, lengths: list[int]) -> None:
    """Series whose actions name their own step: action[t] = (episode, t / 1000, 0)."""
    for e, length in enumerate(lengths):
        action = np.stack([np.full(length, e), np.arange(length) / 1000, np.zeros(length)], axis=1)
        done = np.zeros(length, dtype=bool)
        done[-1] = True
        write_series(folder / f"ep{e:08d}.npz", np.zeros((length, 4)), np.full((length, 4), -4.0), action, np.zeros(length),
                     np.zeros(length, dtype=bool), done, vae="labelled")


def trained_steps(batches: list[dict]) -> list[tuple[int, int]]:
    """(episode, step) of every real step M was trained on, from the batches train_on_episodes got."""
    steps = []
    for batch in batches:
        real = batch["step_mask"].bool()
        episode, t = batch["action"][..., 0][real], batch["action"][..., 1][real]
        steps += list(zip(episode.round().int().tolist(), (t * 1000).round().int().tolist()))
    return steps


LENGTHS = [30, 7, 55, 1, 42, 18, 60]  # 7 episodes, 2 held out (the last two by name), 5 for training


def _capture_training(monkeypatch, train_rnn) -> list[dict]:
    batches, real = [], train_rnn.train_on_episodes
    monkeypatch.setattr(train_rnn, "train_on_episodes", lambda mdrnn, opt, batch, *a: batches.append(batch) or real(mdrnn, opt, batch, *a))
    return batches


def test_an_epoch_of_m_trains_every_step_of_every_episode_once(tmp_path, scripts, monkeypatch):
    """Random windows cut at the episode's end weighed step t by min(t + 1, seq_len): the
    first steps, where every dream starts, were almost never trained."""
    write_labelled_series(tmp_path / "series", LENGTHS)
    batches = _capture_training(monkeypatch, scripts[3])
    scripts[3].main(["--epochs", "3", "--batch-size", "2", "--seq-len", "8", "--hidden-size", "8", "--held-out-fraction", "0.3",
                     "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    every_step = sorted((e, t) for e, length in enumerate(LENGTHS[:5]) for t in range(length))
    per_epoch = len(batches) // 3
    for epoch in range(3):
        assert sorted(trained_steps(batches[epoch * per_epoch : (epoch + 1) * per_epoch])) == every_step
    first = [[e for e, t in trained_steps([b]) if t == 0] for b in batches[:per_epoch]]
    assert sorted(sum(first, [])) == [0, 1, 2, 3, 4]  # each batch holds whole episodes, from their first step
    assert trained_steps(batches[:per_epoch]) != trained_steps(batches[per_epoch : 2 * per_epoch])  # a new order each epoch


def test_an_epoch_resumed_after_a_stop_still_trains_every_step_once(tmp_path, scripts, monkeypatch, capsys):
    write_labelled_series(tmp_path / "series", LENGTHS)
    argv = ["--epochs", "1", "--batch-size", "2", "--seq-len", "8", "--hidden-size", "8", "--held-out-fraction", "0.3",
            "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    batches, real = [], scripts[3].train_on_episodes

    def record(mdrnn, optimizer, batch, *rest):
        batches.append(batch)
        if len(batches) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first batch of the epoch
        return real(mdrnn, optimizer, batch, *rest)
    monkeypatch.setattr(scripts[3], "train_on_episodes", record)
    with pytest.raises(SystemExit):
        run_stage(lambda: scripts[3].main(argv))
    assert "saved after batch 1 of epoch 1" in capsys.readouterr().err and len(batches) == 1
    scripts[3].main(argv)
    assert len(batches) == 3
    assert sorted(trained_steps(batches)) == sorted((e, t) for e, length in enumerate(LENGTHS[:5]) for t in range(length))


def test_a_reward_floor_serves_the_off_playfield_penalty_as_the_floor_and_every_other_reward_as_recorded(tmp_path, scripts, monkeypatch):
    rewards = np.array([-0.1, 3.2, -0.1, -100.0])  # the last step leaves the playfield
    done = np.array([False, False, False, True])
    write_series(tmp_path / "series" / "ep00000000.npz", np.zeros((4, 4)), np.full((4, 4), -4.0), np.zeros((4, 3)), rewards,
                 done, done, vae="labelled")
    batches = _capture_training(monkeypatch, scripts[3])
    argv = ["--epochs", "1", "--batch-size", "1", "--hidden-size", "8", "--held-out-fraction", "0",
            "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    scripts[3].main(argv + ["--reward-floor", "-1"])
    scripts[3].main(argv + ["--restart"])
    floored, recorded = (batch["reward"][0].numpy() for batch in batches)
    np.testing.assert_allclose(floored, [-0.1, 3.2, -0.1, -1.0], rtol=1e-6)
    np.testing.assert_allclose(recorded, rewards, rtol=1e-6)


def _chunk_gradients(train_rnn, batch: dict, seq_len: int, batch_size: int) -> list:
    """M's gradient at each of train_on_episodes' optimizer steps (the weights never change)."""
    torch.manual_seed(0)
    mdrnn, grads = MDNRNN(z_size=4, hidden_size=8), []

    class Recorder:
        def zero_grad(self):
            mdrnn.zero_grad()

        def step(self):
            grads.append(torch.cat([p.grad.flatten() for p in mdrnn.parameters()]).clone())
    train_rnn.train_on_episodes(mdrnn, Recorder(), batch, seq_len, 1e9, batch_size)
    return grads


def _episode_batch(length: int, copies: int = 1) -> dict:
    rng = np.random.default_rng(length)
    one = {"z": rng.normal(size=(1, length, 4)), "next_z": rng.normal(size=(1, length, 4)), "action": rng.uniform(size=(1, length, 3)),
           "reward": rng.normal(size=(1, length)), "terminated": np.zeros((1, length)), "step_mask": np.ones((1, length)),
           "next_mask": np.ones((1, length))}
    return {k: torch.as_tensor(np.concatenate([v] * copies), dtype=torch.float32) for k, v in one.items()}


def test_every_step_of_m_weighs_the_same_in_a_smaller_last_batch_and_a_short_last_chunk(scripts):
    """A chunk's loss is a mean over its steps; scaled by steps / numel, the steps of a short
    last chunk or of a smaller last batch weighed more than the others."""
    train_rnn = scripts[3]
    twice = _chunk_gradients(train_rnn, _episode_batch(8, copies=2), 4, batch_size=2)
    once = _chunk_gradients(train_rnn, _episode_batch(8), 4, batch_size=2)  # the last batch of an epoch, half full
    for full, half in zip(twice, once):
        torch.testing.assert_close(half, full / 2)  # half the steps: half the weight
    short = _chunk_gradients(train_rnn, _episode_batch(2), 4, batch_size=1)  # 2 steps in a chunk of 4
    whole = _chunk_gradients(train_rnn, _episode_batch(2), 2, batch_size=1)  # the same 2 steps as a full chunk of 2
    torch.testing.assert_close(short[0], whole[0] * 2 / 4)  # each step weighs 1 / (batch x seq_len) in its run
