import numpy as np
import pytest
import torch

from worldmodels.controller import LinearControllers, parameter_count
from worldmodels.errors import DataError
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.mdrnn import MDNRNN, mixture_nll
from worldmodels.parallel import LocalPool
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.rollout import DETOUR_STEPS, Agent, TrainingEpisodes, run_agent_episodes
from worldmodels.vision import acting as acting_module
from worldmodels.vision import ActingEncoder, ConvVAE, cpu_has_native_bfloat16
from worldmodels.worlds import Worlds


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return ConvVAE(32).eval(), MDNRNN(32, 3, 256, 5).eval()


@pytest.mark.parametrize("fast_render, fast_acting", [(False, False), (True, False), (True, True)],
                         ids=["stock", "fast renderer", "fast acting"])
def test_batched_episodes_equal_one_at_a_time(models, fast_render, fast_acting):
    vae, mdrnn = models
    params = np.random.default_rng(0).normal(0, 0.1, (3, parameter_count(288))).astype(np.float32)
    seeds = [11, 12, 13]
    training = TrainingEpisodes(patience=10, detours=0.05)  # each episode's detours come from its own track seed
    batched = run_agent_episodes(vae, mdrnn, params, seeds, max_steps=30, training=training, fast_render=fast_render,
                                 fast_acting=fast_acting)
    for i in range(3):
        alone = run_agent_episodes(vae, mdrnn, params[i : i + 1], seeds[i : i + 1], max_steps=30, training=training,
                                   fast_render=fast_render, fast_acting=fast_acting)
        assert alone.returns[0] == pytest.approx(batched.returns[i], abs=1e-9)
        assert alone.steps[0] == batched.steps[i]


def test_patience_ends_episodes_without_progress(models):
    vae, mdrnn = models
    params = np.zeros((1, parameter_count(32)), dtype=np.float32)
    params[0, -1] = 10.0  # brake bias: the car never moves, so it never earns a reward
    params[0, -2] = -10.0  # no gas
    result = run_agent_episodes(vae, mdrnn, params, [3], max_steps=200, training=TrainingEpisodes(patience=20), inputs="z")
    # the first step pays for the tile the car starts on; then 20 steps without a reward
    assert result.steps[0] == 1 + 20


def test_detours_send_every_controller_on_a_track_off_with_the_same_walk_and_m_follows_it(models):
    vae, mdrnn = models
    params = np.random.default_rng(1).normal(0, 0.1, (2, parameter_count(32))).astype(np.float32)
    steps = DETOUR_STEPS[0]  # with chance 1 a detour starts at once and lasts at least this long
    result = run_agent_episodes(vae, mdrnn, params, [7, 7], max_steps=steps, training=TrainingEpisodes(detours=1.0),
                                inputs="z", record_actions=True)
    walk = RandomWalkPolicy(np.random.default_rng([7, 2]))
    expected = np.array([walk() for _ in range(steps)], dtype=np.float32)
    assert np.array_equal(result.actions[0], expected) and np.array_equal(result.actions[1], expected)
    assert result.returns[0] == result.returns[1]  # the same car, whatever the controllers would have done
    plain = run_agent_episodes(vae, mdrnn, params, [7, 7], max_steps=steps, inputs="z", record_actions=True)
    assert not np.array_equal(plain.actions[0], plain.actions[1])  # without detours the two controllers drive


def test_an_episode_records_the_steps_since_its_last_new_tile(models):
    vae, mdrnn = models
    params = np.zeros((2, parameter_count(32)), dtype=np.float32)
    params[0, -1], params[0, -2] = 10.0, -10.0  # parked: only the first step pays (the tile it starts on)
    params[1, -2] = 10.0  # full gas, straight: a new tile every few steps
    result = run_agent_episodes(vae, mdrnn, params, [3, 3], max_steps=60, inputs="z")
    assert result.steps_since_last_tile[0] == 60 - 1
    assert result.returns[1] > 0 and result.steps_since_last_tile[1] < 10


def test_curiosity_rewards_m_s_nll_of_each_new_frame_s_z(models):
    """Agent.surprise at step t is M's mixture NLL (nats per dimension) of V's z_t under
    the mixture M predicted from (z_{t-1}, a_{t-1}); 0 at the first step."""
    vae, mdrnn = models
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 2, 64, 64, 3), dtype=np.uint8)  # 3 steps of 2 envs
    params = rng.normal(0, 0.1, (2, parameter_count(288))).astype(np.float32)
    agent = Agent(vae, mdrnn, params)
    surprises = []
    for t in range(3):
        agent.act(frames[t], np.array([True, t < 2]))  # env 1 ends after two steps
        surprises.append(agent.surprise.copy())
    with torch.no_grad():
        z = [vae.encode(torch.as_tensor(frames_to_tensor_layout(frames[t])))[0] for t in range(3)]
        state = mdrnn.initial_state(2)
        expected = [np.zeros(2)]
        controllers = LinearControllers(torch.as_tensor(params), 288)
        for t in range(2):
            action = controllers(torch.cat([z[t], state[0][0]], dim=1))
            out, state = mdrnn.step(z[t], action, state)
            expected.append(mixture_nll(out["log_pi"], out["mu"], out["log_sigma"], z[t + 1]).mean(-1).numpy())
    np.testing.assert_allclose(surprises[0], expected[0])
    np.testing.assert_allclose(surprises[1], expected[1], rtol=1e-5)
    np.testing.assert_allclose(surprises[2][0], expected[2][0], rtol=1e-5)  # env 0 at step 2
    assert surprises[2][1] == surprises[1][1]  # env 1 had ended: its last surprise stays


def test_episode_results_sum_the_surprise_along_each_episode(models):
    vae, mdrnn = models
    params = np.zeros((2, parameter_count(288)), dtype=np.float32)
    results = run_agent_episodes(vae, mdrnn, params, [3, 4], max_steps=12, fast_render=True)
    assert results.surprise.shape == (2,) and (results.surprise > 0).all()


def test_acting_encoder_gives_v_s_mu_to_within_bfloat16_rounding(models):
    vae, _ = models
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    encoder = ActingEncoder(vae)
    with torch.no_grad():
        mu = vae.encode(torch.from_numpy(frames_to_tensor_layout(frames.numpy())))[0]
    acting = encoder(frames)
    assert acting.dtype == torch.float32 and acting.shape == mu.shape
    assert encoder.bfloat16 == cpu_has_native_bfloat16()
    tolerance = 0.02 * mu.abs().max().item() if encoder.bfloat16 else 1e-5
    assert (acting - mu).abs().max().item() <= tolerance


def test_acting_encoder_stays_in_float32_where_the_cpu_has_no_bfloat16(models, monkeypatch):
    monkeypatch.setattr(acting_module, "cpu_has_native_bfloat16", lambda: False)
    encoder = ActingEncoder(models[0])
    assert not encoder.bfloat16 and encoder.encoder is models[0].encoder


def test_a_worker_acts_in_the_precision_its_driver_chose_or_refuses(models, monkeypatch):
    """On a cluster where only some nodes have bfloat16, a fitness used to depend on where its
    task ran: each worker chose from its own CPU."""
    vae, mdrnn = models
    params = np.zeros((1, parameter_count(288)), dtype=np.float32)
    assert not Agent(vae, mdrnn, params, fast_acting=True, bfloat16=False).acting_encoder.bfloat16  # whatever this CPU has
    monkeypatch.setattr(acting_module, "cpu_has_native_bfloat16", lambda: False)  # a node without bfloat16
    with pytest.raises(DataError, match="cannot act in bfloat16, which the run chose where it started: run it with --no-fast-acting"):
        run_agent_episodes(vae, mdrnn, params, [1], max_steps=5, fast_render=True, fast_acting=True, bfloat16=True)
    with LocalPool(1) as pool:
        worlds = Worlds(pool, vae, mdrnn, 5, True, True, fast_acting=True)
        assert worlds.bfloat16 is False and "fast acting in float32" in worlds.describe_renderer()


def test_acting_encoder_refuses_a_bfloat16_encoder_it_cannot_flatten(models, monkeypatch):
    monkeypatch.setattr(acting_module, "cpu_has_native_bfloat16", lambda: True)
    vae = ConvVAE()
    vae.encoder = torch.nn.Sequential(*list(vae.encoder)[:-1])  # no nn.Flatten at the end
    with pytest.raises(TypeError, match="must end with nn.Flatten"):
        ActingEncoder(vae)


def test_fast_acting_needs_the_fast_renderer(models):
    vae, mdrnn = models
    params = np.zeros((1, parameter_count(288)), dtype=np.float32)
    with pytest.raises(ValueError, match="fast renderer"):
        run_agent_episodes(vae, mdrnn, params, [1], max_steps=5, fast_render=False, fast_acting=True)
