import numpy as np
import pytest

from worldmodels.probe import cross_validated_probe, episode_folds, r_squared


def _episodes(rng, count, steps, features, signal):
    """Episodes whose target is a fixed linear map of the features (plus noise), and an
    episode-level offset the features cannot tell (so a probe can only explain so much)."""
    weights = np.full(features, signal)
    xs = [rng.normal(size=(steps, features)) for _ in range(count)]
    ys = [x @ weights + rng.normal() * 0.5 + rng.normal(size=steps) * 0.5 for x in xs]
    return xs, ys


def test_folds_cover_every_episode_once_and_never_share_one():
    folds = episode_folds(23, 5, seed=3)
    joined = np.concatenate(folds)
    assert sorted(joined) == list(range(23)) and len(folds) == 5


def test_a_probe_recovers_a_linear_target_on_held_out_episodes():
    xs, ys = _episodes(np.random.default_rng(0), 20, 50, 4, signal=1.0)
    score = cross_validated_probe(xs, ys, folds=5)
    # the noise (0.5^2 + 0.5^2 against 4 of signal) caps R^2 at 4 / 4.5 = 0.89
    assert 0.8 < score.mean < 0.95 and score.r2.shape == (5,)


def test_features_that_hold_nothing_score_no_better_than_the_mean():
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(30, 40)) for _ in range(15)]  # many features, few steps: easy to overfit
    ys = [rng.normal(size=30) for _ in range(15)]
    score = cross_validated_probe(xs, ys, folds=5)
    assert score.mean < 0.05
    assert score.penalties.max() >= 100  # the inner folds choose a strong penalty


def test_r_squared_is_one_for_a_perfect_prediction_and_zero_for_the_mean():
    target = np.array([1.0, 2.0, 4.0])
    assert r_squared(target, target) == 1.0
    assert r_squared(np.full(3, target.mean()), target) == pytest.approx(0.0)


def test_mismatched_episodes_are_refused():
    with pytest.raises(ValueError):
        cross_validated_probe([np.zeros((3, 2))], [np.zeros(4)])
