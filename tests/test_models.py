import math

import numpy as np
import pytest
import torch

from worldmodels.controller import LinearControllers, parameter_count, squash_action
from worldmodels.mdrnn import MDNRNN, mdrnn_loss, mixture_nll, sample_mixture, states_before_actions
from worldmodels.vision import ConvVAE, vae_loss


@pytest.mark.parametrize("batch", [1, 5])
def test_vae_shapes(batch):
    vae = ConvVAE(32)
    x = torch.rand(batch, 3, 64, 64)
    recon, mu, logvar = vae(x)
    assert recon.shape == (batch, 3, 64, 64) and mu.shape == logvar.shape == (batch, 32)
    assert 0 <= recon.min() and recon.max() <= 1
    assert vae.decode(mu).shape == (batch, 3, 64, 64)


def test_vae_loss_sums_pixels_and_floors_kl():
    x = torch.zeros(2, 3, 64, 64)
    recon = torch.full_like(x, 0.5)
    mu, logvar = torch.zeros(2, 32), torch.zeros(2, 32)  # KL = 0, floored to 0.5 * 32
    loss, reconstruction, kl = vae_loss(x, recon, mu, logvar, kl_tolerance=0.5)
    assert reconstruction.item() == pytest.approx(3 * 64 * 64 * 0.25)
    assert kl.item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(3 * 64 * 64 * 0.25 + 16)
    big_mu = torch.full((2, 32), 2.0)  # KL = 0.5 * 4 * 32 = 64 > floor
    loss, _, kl = vae_loss(x, recon, big_mu, logvar, kl_tolerance=0.5)
    assert kl.item() == pytest.approx(64) and loss.item() == pytest.approx(3 * 64 * 64 * 0.25 + 64)


@pytest.mark.parametrize("batch", [1, 4])
def test_mdrnn_shapes_for_sequences_and_steps(batch):
    m = MDNRNN(z_size=32, action_size=3, hidden_size=256, gaussians=5)
    out, (h, c) = m(torch.randn(batch, 7, 32), torch.randn(batch, 7, 3))
    for key in ("log_pi", "mu", "log_sigma"):
        assert out[key].shape == (batch, 7, 32, 5)
    assert out["reward"].shape == out["done_logit"].shape == (batch, 7)
    assert h.shape == c.shape == (1, batch, 256)
    step, state = m.step(torch.randn(batch, 32), torch.randn(batch, 3), m.initial_state(batch))
    assert step["mu"].shape == (batch, 32, 5) and step["reward"].shape == (batch,)
    assert torch.allclose(step["log_pi"].exp().sum(-1), torch.ones(batch, 32))


def test_stepping_equals_running_the_sequence():
    torch.manual_seed(0)
    m = MDNRNN(z_size=4, action_size=3, hidden_size=8, gaussians=2)
    z, a = torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    whole, _ = m(z, a)
    state = m.initial_state(2)
    for t in range(6):
        out, state = m.step(z[:, t], a[:, t], state)
        assert torch.allclose(out["mu"], whole["mu"][:, t], atol=1e-6)
        assert torch.allclose(out["done_logit"], whole["done_logit"][:, t], atol=1e-6)


def test_mixture_nll_matches_brute_force_density():
    rng = np.random.default_rng(0)
    logits, mu, log_sigma = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)) * 0.5
    x = rng.normal(size=(3, 4))
    pi = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    sigma = np.exp(log_sigma)
    density = (pi * np.exp(-0.5 * ((x[..., None] - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))).sum(-1)
    log_pi = torch.log_softmax(torch.tensor(logits), -1)
    nll = mixture_nll(log_pi, torch.tensor(mu), torch.tensor(log_sigma), torch.tensor(x))
    assert np.allclose(nll.numpy(), -np.log(density), rtol=1e-10)


def test_mixture_nll_is_finite_far_from_every_component():
    log_pi = torch.log_softmax(torch.zeros(1, 5), -1)
    nll = mixture_nll(log_pi, torch.zeros(1, 5), torch.full((1, 5), -7.0), torch.tensor([50.0]))
    assert torch.isfinite(nll).all() and nll.item() > 1e6


def test_mdrnn_loss_masks_missing_next_frames():
    m = MDNRNN(z_size=4, action_size=3, hidden_size=8, gaussians=2)
    batch = {"z": torch.randn(2, 5, 4), "action": torch.randn(2, 5, 3), "next_z": torch.randn(2, 5, 4),
             "reward": torch.randn(2, 5), "terminated": torch.zeros(2, 5),
             "step_mask": torch.ones(2, 5), "next_mask": torch.ones(2, 5)}
    batch["next_mask"][:, -1] = 0
    out, _ = m(batch["z"], batch["action"])
    losses = mdrnn_loss(out, batch)
    batch["next_z"][:, -1] = 1e6  # a masked target must not change the loss
    assert torch.allclose(mdrnn_loss(out, batch)["nll"], losses["nll"])
    assert torch.allclose(losses["loss"], losses["nll"] + losses["reward"] + losses["done"])


def _two_component_mixture():
    log_pi = torch.log(torch.tensor([0.8, 0.2])).expand(20000, 1, 2)
    mu = torch.tensor([-1.0, 3.0]).expand(20000, 1, 2)
    log_sigma = torch.log(torch.tensor([0.5, 0.5])).expand(20000, 1, 2)
    return log_pi, mu, log_sigma


def test_temperature_widens_and_narrows_the_samples():
    stds = []
    for tau in (0.1, 1.0, 1.5):
        g = torch.Generator().manual_seed(0)
        stds.append(sample_mixture(*_two_component_mixture(), temperature=tau, generator=g).std().item())
    assert stds[0] < stds[1] < stds[2]
    g = torch.Generator().manual_seed(0)
    cold = sample_mixture(*_two_component_mixture(), temperature=0.01, generator=g)
    assert (cold - (-1.0)).abs().max() < 0.5  # near-deterministic: the dominant mode's mean


def test_temperature_one_samples_the_mixture():
    g = torch.Generator().manual_seed(0)
    z = sample_mixture(*_two_component_mixture(), temperature=1.0, generator=g)
    assert z.mean().item() == pytest.approx(0.8 * -1 + 0.2 * 3, abs=0.05)
    assert (z > 1).float().mean().item() == pytest.approx(0.2, abs=0.02)


def test_controller_has_867_parameters_for_z_and_h():
    assert parameter_count(32 + 256) == 867
    assert parameter_count(32) == 99


@pytest.mark.parametrize("batch", [1, 3])
def test_controller_actions_stay_in_bounds(batch):
    params = torch.randn(batch, 867) * 100
    actions = LinearControllers(params, 288)(torch.randn(batch, 288) * 100)
    assert actions.shape == (batch, 3)
    assert (actions[:, 0].abs() <= 1).all() and (actions[:, 1:] >= 0).all() and (actions[:, 1:] <= 1).all()


def test_zero_controller_steers_straight_at_half_gas_without_braking():
    actions = LinearControllers(torch.zeros(2, 867), 288)(torch.randn(2, 288))
    assert torch.allclose(actions, torch.tensor([[0.0, 0.5, 0.0]] * 2))


def test_controller_rows_select_their_own_parameters():
    params = torch.randn(3, 99)
    controllers = LinearControllers(params, 32)
    features = torch.randn(2, 32)
    picked = controllers(features, rows=torch.tensor([2, 0]))
    assert torch.allclose(picked[0], LinearControllers(params[2:3], 32)(features[:1])[0])
    assert torch.allclose(picked[1], LinearControllers(params[0:1], 32)(features[1:])[0])


def test_squash_action_brake_is_clipped_not_shifted():
    assert squash_action(torch.tensor([0.0, 0.0, -5.0])).tolist() == [0.0, 0.5, 0.0]


def test_head_scores_count_tiles_and_ends():
    from worldmodels.mdrnn import DONE_POS_WEIGHT, head_scores

    reward = torch.tensor([[-0.1, 3.5, -0.1, -100.0]])
    batch = {"reward": reward, "terminated": torch.tensor([[0.0, 0.0, 0.0, 1.0]]), "step_mask": torch.ones(1, 4)}
    sure = 10.0 + math.log(DONE_POS_WEIGHT)  # a confident end after the training weight is divided back
    out = {"reward": torch.tensor([[-0.1, 0.5, 2.0, -90.0]]), "done_logit": torch.tensor([[-10.0, sure, -10.0, sure]])}
    scores = head_scores(out, batch)
    assert scores["tile_accuracy"] == 0.5  # the tile at step 1 is missed, step 2 is a false tile
    assert scores["tile_steps"] == 0.25
    assert scores["tile_auc"] == 0.5  # the tile (0.5) ranks above -0.1 but below 2.0; the -100 step is left out
    assert (scores["ends"], scores["ends_found"], scores["false_ends"]) == (1, 1, 1)
    out["done_logit"] = torch.full((1, 4), math.log(DONE_POS_WEIGHT) - 0.1)  # P just under 0.5 once corrected
    assert head_scores(out, batch)["ends_found"] == 0


def test_tile_auc_counts_ties_as_half():
    from worldmodels.mdrnn import _ranking_auc

    positive, negative = torch.tensor([0.5, 0.5, 2.0]), torch.tensor([-0.1, 0.5, 2.0, 3.0])
    brute = sum(float(p > n) + 0.5 * float(p == n) for p in positive for n in negative) / 12
    assert _ranking_auc(positive, negative) == pytest.approx(brute)


def test_states_before_actions_are_the_states_an_agent_steps_through():
    torch.manual_seed(0)
    mdrnn = MDNRNN(z_size=4, hidden_size=8, gaussians=2)
    z, action = torch.randn(12, 4), torch.rand(12, 3)
    h, c = states_before_actions(mdrnn, z, action)
    state = mdrnn.initial_state(1)
    for t in range(12):
        assert torch.allclose(h[t], state[0][0, 0], atol=1e-6) and torch.allclose(c[t], state[1][0, 0], atol=1e-6)
        _, state = mdrnn.step(z[t:t + 1], action[t:t + 1], state)
