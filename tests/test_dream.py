"""Dreams inside M: batch-size independence, temperature, branching from real states, the gymnasium face."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from helpers import save_untrained_models, stage_error, write_random_rollouts

from worldmodels.controller import parameter_count
from worldmodels.dream import DreamBatch, ZCharge, branch_starts, run_dream_episodes, z_disagreement, z_disagreement_threshold
from worldmodels.envs.dream_env import DreamEnv
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


def test_a_branching_dream_starts_from_the_recorded_frame_and_ms_state_after_the_steps_before_it(mdrnn):
    rng = np.random.default_rng(1)
    episodes = [{"mu": rng.normal(size=(n, 32)).astype(np.float16), "action": rng.uniform(-1, 1, (n, 3)).astype(np.float32)}
                for n in (40, 7, 25)]
    z, [(h, c)] = branch_starts([mdrnn], episodes, 50, seed=3)
    lengths = np.array([40, 7, 25])
    found = 0
    for i in range(50):  # find each start's episode and step by its z, then run M there by hand
        matches = [(e, t) for e, episode in enumerate(episodes) for t in range(len(episode["mu"]))
                   if np.array_equal(episode["mu"][t].astype(np.float32), z[i])]
        assert len(matches) == 1
        e, t = matches[0]
        with torch.no_grad():
            state = mdrnn.initial_state(1)
            if t:
                _, state = mdrnn(torch.as_tensor(episodes[e]["mu"][None, :t], dtype=torch.float32),
                                 torch.as_tensor(episodes[e]["action"][None, :t]), state)
        np.testing.assert_allclose(h[i], state[0][0, 0].numpy(), atol=1e-5)
        np.testing.assert_allclose(c[i], state[1][0, 0].numpy(), atol=1e-5)
        found += t == 0
    assert 0 < found < 50 and lengths.sum() > 50  # first frames are among the starts, as often as any other step
    # a dream from a mid-episode start: C sees that z and h, and M goes on from there
    i = int(np.flatnonzero(np.abs(h).sum(axis=1) > 0)[0])
    start = slice(i, i + 1)
    params = rng.normal(0, 0.3, (1, parameter_count(32 + 64))).astype(np.float32)
    dreams = DreamBatch(mdrnn, torch.as_tensor(z[start]), [9], 1.0, states=[(torch.as_tensor(h[start]), torch.as_tensor(c[start]))])
    assert torch.equal(dreams.features, torch.cat([torch.as_tensor(z[start]), torch.as_tensor(h[start])], dim=1))
    branched = run_dream_episodes(mdrnn, params, z[start], [9], 1.0, 30, states=[(h[start], c[start])])
    fresh = run_dream_episodes(mdrnn, params, z[start], [9], 1.0, 30)
    assert branched.returns[0] != pytest.approx(fresh.returns[0])


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
    env = DreamEnv.from_models(mdrnn, np.random.default_rng(0).normal(size=(5, 32)), temperature=1.0, max_steps=20)
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
    from worldmodels.vision import ConvVAE
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


def other_member(seed: int) -> MDNRNN:
    torch.manual_seed(seed)
    model = MDNRNN(32, 3, 64, 5).eval()
    with torch.no_grad():
        model.done.bias.fill_(-2.0)
    return model


def test_an_ensemble_of_copies_of_m_dreams_what_m_dreams_alone(mdrnn):
    rng = np.random.default_rng(2)
    params = rng.normal(0, 0.3, (3, parameter_count(32 + 64))).astype(np.float32)
    z0 = rng.normal(0, 1, (3, 32)).astype(np.float32)
    copies = [MDNRNN(32, 3, 64, 5).eval() for _ in range(2)]
    for copy in copies:
        copy.load_state_dict(mdrnn.state_dict())
    # within the first chunk of draws both dreams use the same random numbers for z and the end
    alone = run_dream_episodes(mdrnn, params, z0, [1, 2, 3], 1.15, 60)
    ensemble = run_dream_episodes(mdrnn, params, z0, [1, 2, 3], 1.15, 60, members=copies, disagreement=5.0)
    np.testing.assert_array_equal(ensemble.steps, alone.steps)
    np.testing.assert_allclose(ensemble.returns, alone.returns, atol=1e-5)  # copies agree: no charge


def test_the_ensemble_dream_charges_for_disagreement(mdrnn):
    members = [other_member(1), other_member(2)]
    z0, actions = torch.randn(4, 32), torch.full((4, 3), 0.5)
    rewards = {}
    for penalty in (0.0, 2.0):
        dreams = DreamBatch(mdrnn, z0, [1, 2, 3, 4], 1.0, members, penalty)
        rewards[penalty], _ = dreams.step(actions)
    # the members' own predictions for the same first step
    predicted = torch.stack([m.step(z0, actions, m.initial_state(4))[0]["reward"] for m in [mdrnn, *members]])
    torch.testing.assert_close(rewards[0.0], predicted.mean(0))
    torch.testing.assert_close(rewards[2.0], predicted.mean(0) - 2.0 * predicted.std(0, correction=0))
    # C sees M's own hidden state, as it does in the real env
    torch.testing.assert_close(dreams.features[:, 32:], mdrnn.step(z0, actions, mdrnn.initial_state(4))[1][0][0])


def test_the_ensemble_dream_charges_for_disagreement_about_z_above_the_threshold(mdrnn):
    members = [other_member(1), other_member(2)]
    z0, actions = torch.randn(4, 32), torch.full((4, 3), 0.5)
    with torch.no_grad():
        outs = [m.step(z0, actions, m.initial_state(4))[0] for m in [mdrnn, *members]]
    means = torch.stack([(out["log_pi"].exp() * out["mu"]).sum(-1) for out in outs])  # each M's mixture mean [3, 4, 32]
    disagreement = means.std(0, correction=0).mean(-1)  # [4]
    assert disagreement.min() > 0
    threshold = float(disagreement.median())  # some dreams above it, some not
    rewards = {}
    for charge in (None, ZCharge(3.0, threshold)):
        rewards[charge], _ = DreamBatch(mdrnn, z0, [1, 2, 3, 4], 1.0, members, 0.0, z_charge=charge).step(actions)
    charged = rewards[ZCharge(3.0, threshold)]
    torch.testing.assert_close(charged, rewards[None] - 3.0 * (disagreement - threshold).clamp(min=0))
    assert (charged == rewards[None]).any() and (charged < rewards[None]).any()


def test_the_z_threshold_is_a_quantile_of_the_disagreement_along_the_recorded_episodes(mdrnn):
    members = [other_member(1)]
    rng = np.random.default_rng(5)
    episodes = [{"mu": rng.normal(0, 1, (n, 32)).astype(np.float32), "action": rng.uniform(-1, 1, (n, 3)).astype(np.float32)}
                for n in (7, 12)]
    by_hand = []
    for episode in episodes:  # each M stepped by hand along the real latents, from its zero state
        states = [m.initial_state(1) for m in (mdrnn, *members)]
        for z, action in zip(torch.as_tensor(episode["mu"]), torch.as_tensor(episode["action"])):
            outs = []
            for i, m in enumerate((mdrnn, *members)):
                out, states[i] = m.step(z[None], action[None], states[i])
                outs.append(out)
            by_hand.append(z_disagreement(outs).item())
    assert z_disagreement_threshold([mdrnn, *members], episodes, 0.0) == pytest.approx(min(by_hand), abs=1e-6)
    assert z_disagreement_threshold([mdrnn, *members], episodes, 1.0) == pytest.approx(max(by_hand), abs=1e-6)
    assert z_disagreement_threshold([mdrnn, mdrnn], episodes, 1.0) == 0.0  # an M agrees with itself


def test_an_ensemble_dream_unfolds_the_same_alone_and_in_a_batch(mdrnn):
    members = [other_member(3)]
    rng = np.random.default_rng(4)
    params = rng.normal(0, 0.3, (3, parameter_count(32 + 64))).astype(np.float32)
    z0 = rng.normal(0, 1, (3, 32)).astype(np.float32)
    batch = run_dream_episodes(mdrnn, params, z0, [7, 8, 9], 1.15, 150, members=members, disagreement=1.0)
    for i in range(3):
        alone = run_dream_episodes(mdrnn, params[i : i + 1], z0[i : i + 1], [7 + i], 1.15, 150, members=members, disagreement=1.0)
        assert alone.steps[0] == batch.steps[i]
        assert alone.returns[0] == pytest.approx(batch.returns[i], abs=1e-5)


def test_a_disagreement_penalty_needs_members(mdrnn):
    with pytest.raises(ValueError, match="needs ensemble members"):
        DreamBatch(mdrnn, torch.zeros(1, 32), [0], 1.0, disagreement=1.0)
    with pytest.raises(ValueError, match="needs ensemble members"):
        DreamBatch(mdrnn, torch.zeros(1, 32), [0], 1.0, z_charge=ZCharge(1.0, 0.0))


def dropout_copy(mdrnn, rate):
    """M's weights in an M trained with dropout ``rate``."""
    model = MDNRNN(32, 3, 64, 5, dropout=rate).eval()
    model.load_state_dict(mdrnn.state_dict())
    return model


def test_a_dropout_mask_drops_its_share_and_keeps_the_scale():
    model = MDNRNN(32, 3, 64, 5, dropout=0.25)
    mask = model.dropout_mask(torch.rand(200, 64, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(mask.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert (mask == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    assert mask.mean().item() == pytest.approx(1.0, abs=0.03)  # the heads see h at its usual scale on average


def test_dropout_acts_in_training_and_not_in_the_real_env(mdrnn):
    model = dropout_copy(mdrnn, 0.5)
    z, action = torch.randn(2, 10, 32), torch.rand(2, 10, 3)
    with torch.no_grad():
        (first, state), (second, _) = model.train()(z, action), model(z, action)
        (evaluated, eval_state), (plain, plain_state) = model.eval()(z, action), mdrnn(z, action)
    assert not torch.equal(first["mu"], second["mu"])  # a new mask each call in training
    torch.testing.assert_close(evaluated["mu"], plain["mu"])  # outside training: M itself
    torch.testing.assert_close(state[0], plain_state[0])  # h itself is never dropped: C sees all of it
    torch.testing.assert_close(eval_state[0], plain_state[0])


def test_a_dropout_dream_draws_a_new_mask_every_step_and_only_when_asked(mdrnn):
    model = dropout_copy(mdrnn, 0.3)
    rng = np.random.default_rng(5)
    params = rng.normal(0, 0.3, (3, parameter_count(32 + 64))).astype(np.float32)
    z0 = rng.normal(0, 1, (3, 32)).astype(np.float32)
    plain = run_dream_episodes(mdrnn, params, z0, [1, 2, 3], 1.15, 100)
    unmasked = run_dream_episodes(model, params, z0, [1, 2, 3], 1.15, 100, dropout=False)
    masked = run_dream_episodes(model, params, z0, [1, 2, 3], 1.15, 100, dropout=True)
    np.testing.assert_allclose(unmasked.returns, plain.returns, atol=1e-5)  # without masks: M's own dream
    assert not np.allclose(masked.returns, plain.returns)
    # an M without dropout dreams the same with the flag on: there is nothing to mask
    np.testing.assert_allclose(run_dream_episodes(mdrnn, params, z0, [1, 2, 3], 1.15, 100, dropout=True).returns,
                               plain.returns, atol=1e-5)
    for i in range(3):  # masks come from each dream's own stream: alone as in the batch
        alone = run_dream_episodes(model, params[i : i + 1], z0[i : i + 1], [1 + i], 1.15, 100, dropout=True)
        assert alone.steps[0] == masked.steps[i]
        assert alone.returns[0] == pytest.approx(masked.returns[i], abs=1e-5)


def test_a_dropout_dream_step_uses_the_drawn_mask(mdrnn):
    model = dropout_copy(mdrnn, 0.4)
    z0, actions = torch.randn(2, 32), torch.full((2, 3), 0.5)
    dreams = DreamBatch(model, z0, [4, 5], 1.0, dropout=True)
    reward, _ = dreams.step(actions)
    draws = dreams.noise[:, 0]  # the random numbers the first step took
    mask = model.dropout_mask(draws[:, 2 * 32 + 1 :])
    assert mask.shape == (2, 64) and (mask == 0).any()
    expected = model.step(z0, actions, model.initial_state(2), mask)[0]["reward"]
    torch.testing.assert_close(reward, expected)


def test_a_search_in_branching_dreams_says_so_and_does_not_resume_as_another_kind_of_dream(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path / "ckpt")
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=12)
    scripts[2].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    search = ["--dream", "--series-dir", str(tmp_path / "series"), "--generations", "1", "--population", "2", "--episodes-per-candidate", "1",
              "--max-steps", "5", "--check-every", "1", "--check-episodes", "1", "--workers", "1", "--gif-steps", "0",
              "--checkpoint-dir", str(tmp_path / "ckpt")]
    scripts[4].main(search + ["--branch-steps", "3"])
    assert "3 steps each from 4096 real mid-episode states" in capsys.readouterr().out
    message = stage_error(scripts[4], search + ["--generations", "2"])
    assert "cma_state.npz: started with other settings (--branch-steps " in message and "pass --restart" in message
    with pytest.raises(SystemExit):  # argparse's usage error
        scripts[4].main(["--branch-steps", "3", "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert "--branch-steps must be non-negative and shapes dreams: add --dream" in capsys.readouterr().err


def test_identical_members_with_dropout_are_charged_nothing(mdrnn):
    """Each member draws its own dropout mask; compared through their masks, two copies of one
    M disagreed by the masks alone (the charges' thresholds are computed with the whole h)."""
    copies = [dropout_copy(mdrnn, 0.3) for _ in range(2)]
    z0, actions = torch.randn(4, 32), torch.full((4, 3), 0.5)
    rewards = {}
    for name, charges in (("none", {}), ("both", {"disagreement": 5.0, "z_charge": ZCharge(300.0, 0.0)})):
        dreams = DreamBatch(copies[0], z0, [1, 2, 3, 4], 1.0, copies[1:], dropout=True, **charges)
        rewards[name] = torch.stack([dreams.step(actions)[0] for _ in range(5)])
    torch.testing.assert_close(rewards["both"], rewards["none"])  # the copies agree: no charge, masks or not
    # the dream's own reward still comes through the masks: dropout is not switched off by the charges
    unmasked = DreamBatch(copies[0], z0, [1, 2, 3, 4], 1.0, copies[1:], dropout=False)
    assert not torch.allclose(rewards["none"], torch.stack([unmasked.step(actions)[0] for _ in range(5)]))
