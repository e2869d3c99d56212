"""Dreams inside M: batch-size independence, temperature, the gymnasium face."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from worldmodels.controller import parameter_count
from worldmodels.dream import DreamBatch, DreamEnv, run_dream_episodes
from worldmodels.mdrnn import MDNRNN


@pytest.fixture(scope="module")
def mdrnn():
    torch.manual_seed(0)
    model = MDNRNN(32, 3, 64, 5).eval()
    with torch.no_grad():
        model.done.bias.fill_(-2.0)  # ends happen, but not at once
    return model


def test_a_dream_unfolds_the_same_alone_and_in_a_batch(mdrnn):
    rng = np.random.default_rng(0)
    params = rng.normal(0, 0.3, (4, parameter_count(32 + 64))).astype(np.float32)
    z0 = rng.normal(0, 1, (4, 32)).astype(np.float32)
    seeds = [5, 6, 7, 8]
    batch = run_dream_episodes(mdrnn, params, z0, seeds, temperature=1.15, max_steps=150)
    assert batch.steps.min() < 150  # some dreams end by M's done head
    for i in range(4):
        alone = run_dream_episodes(mdrnn, params[i : i + 1], z0[i : i + 1], seeds[i : i + 1], 1.15, 150)
        assert alone.steps[0] == batch.steps[i]
        assert alone.returns[0] == pytest.approx(batch.returns[i], abs=1e-5)


def test_a_dream_depends_on_its_seed(mdrnn):
    z0 = np.zeros((2, 32), dtype=np.float32)
    dreams = DreamBatch(mdrnn, torch.from_numpy(z0), [1, 2], temperature=1.0)
    dreams.step(torch.full((2, 3), 0.5))
    assert not torch.equal(dreams.z[0], dreams.z[1])


def test_temperature_widens_the_dreamed_latents(mdrnn):
    spreads = []
    for tau in (0.3, 1.0, 2.0):
        dreams = DreamBatch(mdrnn, torch.zeros(512, 32), list(range(512)), temperature=tau)
        for _ in range(3):
            dreams.step(torch.full((512, 3), 0.5))
        spreads.append(dreams.z.std(dim=0).mean().item())
    assert spreads[0] < spreads[1] < spreads[2]


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is:UserWarning")  # z is unbounded
def test_dream_env_passes_gymnasiums_checker(mdrnn):
    env = DreamEnv(mdrnn, np.random.default_rng(0).normal(size=(5, 32)), temperature=1.0, max_steps=20)
    check_env(env, skip_render_check=True)
    observation, _ = env.reset(seed=3)
    assert observation.shape == (32 + 64,)
    done = truncated = False
    steps = 0
    while not (done or truncated):
        observation, reward, done, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps <= 20


def test_the_dream_viewer_replays_the_dream_it_decodes(mdrnn):
    from worldmodels.vae import ConvVAE
    from worldmodels.viewer import record_dream

    torch.manual_seed(1)
    vae = ConvVAE(32).eval()
    params = np.random.default_rng(1).normal(0, 0.3, parameter_count(32 + 64)).astype(np.float32)
    z0 = np.zeros(32, dtype=np.float32)
    recording = record_dream(vae, mdrnn, params, z0, dream_seed=5, temperature=1.15, steps=150)
    episode = run_dream_episodes(mdrnn, params[None], z0[None], [5], 1.15, 150)
    # the viewer shows the same dream the trainer scores: same length, same return
    assert len(recording.frames) == len(recording.rewards) == episode.steps[0]
    assert recording.rewards.sum() == pytest.approx(episode.returns[0], abs=1e-4)
    assert recording.ended == (episode.steps[0] < 150)
    assert recording.frames.dtype == np.uint8 and recording.frames.shape[1:] == (64, 64, 3)
