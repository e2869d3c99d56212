import numpy as np
import pytest

from worldmodels.env import make_env
from worldmodels.episodes import TRUTH_KEYS, read_rollout, read_rollout_truth, read_series, write_rollout, write_series
from worldmodels.errors import DataError
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.rollout import collect_exploration_episode


@pytest.fixture(scope="module")
def episode():
    return collect_exploration_episode(seed=5, max_steps=40)


def test_exploration_episode_has_the_rollout_format(episode, tmp_path):
    path = tmp_path / "ep00000005.npz"
    write_rollout(path, **episode, source="exploration")
    loaded = read_rollout(path)
    assert loaded["obs"].shape == (40, 64, 64, 3) and loaded["obs"].dtype == np.uint8
    assert loaded["action"].shape == (40, 3) and loaded["action"].dtype == np.float32
    assert loaded["reward"].shape == (40,) and loaded["reward"].dtype == np.float32
    assert loaded["done"].dtype == np.bool_ and loaded["terminated"].dtype == np.bool_
    assert loaded["done"][-1] and not loaded["done"][:-1].any()  # truncated by the time limit
    assert not loaded["terminated"].any()
    truth = read_rollout_truth(path)
    for key in episode:
        assert np.array_equal(truth[key] if key in TRUTH_KEYS else loaded[key], episode[key])


def test_rollouts_record_the_cars_true_speed_and_tiles_reached(episode):
    speed, tiles = episode["speed"], episode["tiles"]
    assert speed.dtype == np.float32 and speed.shape == (40,) and speed[0] == 0 and (speed >= 0).all()
    assert speed.max() > 1  # the walk gets the car moving within 40 steps
    assert tiles.dtype == np.int32 and (np.diff(tiles) >= 0).all()


def test_a_rollout_written_before_speeds_were_recorded_says_so_in_one_line(episode, tmp_path):
    path = tmp_path / "ep00000005.npz"
    write_rollout(path, **{k: v for k, v in episode.items() if k not in TRUTH_KEYS}, source="exploration")
    read_rollout(path)  # still a good rollout
    with pytest.raises(DataError, match="written before rollouts recorded the car's speed; collect the episodes again"):
        read_rollout_truth(path)


def test_a_speed_of_the_wrong_length_is_refused(episode, tmp_path):
    with pytest.raises(DataError, match="'speed' is not float32"):
        write_rollout(tmp_path / "ep00000005.npz", **episode | {"speed": episode["speed"][:-1]}, source="exploration")


def test_actions_stay_in_carracing_bounds(episode):
    a = episode["action"]
    assert (np.abs(a[:, 0]) <= 1).all() and (a[:, 1:] >= 0).all() and (a[:, 1:] <= 1).all()


def test_episode_is_reproducible_from_its_seed(episode):
    again = collect_exploration_episode(seed=5, max_steps=40)
    for key in episode:
        assert np.array_equal(again[key], episode[key])


def test_reward_t_is_the_reward_of_action_t(episode):
    env = make_env(40)
    env.reset(seed=5)
    rewards = [env.step(action)[1] for action in episode["action"]]
    env.close()
    assert np.allclose(rewards, episode["reward"])


def test_series_roundtrip_stores_latents_as_float16(tmp_path):
    path = tmp_path / "ep00000001.npz"
    steps = 6
    write_series(path, np.zeros((steps, 32)), np.ones((steps, 32)), np.zeros((steps, 3)), np.zeros(steps),
                 np.zeros(steps, bool), np.eye(steps, dtype=bool)[-1], vae="0123456789ab")
    loaded = read_series(path)
    assert loaded["mu"].dtype == np.float16 and loaded["mu"].shape == (steps, 32) and loaded["vae"] == "0123456789ab"
    assert loaded["done"][-1]


def test_corrupt_or_wrong_files_raise_one_clear_error(tmp_path, episode):
    truncated = tmp_path / "ep00000001.npz"
    write_rollout(truncated, **episode, source="exploration")
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(DataError, match="ep00000001.npz: unreadable"):
        read_rollout(truncated)
    missing_key = tmp_path / "ep00000002.npz"
    np.savez(missing_key, obs=episode["obs"])
    with pytest.raises(DataError, match="missing keys"):
        read_rollout(missing_key)
    bad_reward = dict(episode, reward=episode["reward"].copy())
    bad_reward["reward"][3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        write_rollout(tmp_path / "ep00000003.npz", **bad_reward, source="exploration")


def test_exploration_policy_stops_and_sprints_now_and_then():
    policy = RandomWalkPolicy(np.random.default_rng(0))
    actions = np.stack([policy() for _ in range(20_000)])
    for pedals, share in (((0, 1), (0.05, 0.3)), ((1, 0), (0.03, 0.2))):  # stops (full brake), sprints (full gas)
        held = ((actions[:, 1] == pedals[0]) & (actions[:, 2] == pedals[1])).astype(int)
        assert share[0] < held.mean() < share[1]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], held, [0]])))  # starts and ends of runs
        lengths = edges[1::2] - edges[::2]
        assert (lengths >= 20).sum() >= 5  # whole stretches, not a walk touching its bound now and then
