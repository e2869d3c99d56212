"""05 --dream --gradient: C learned by gradient ascent on the dream's expected return, back
through M (worldmodels/dream_gradient.py), and the straight-through sample it rests on."""

import math

import numpy as np
import pytest
import torch
from helpers import log_rows, models_and_series, stage_error

from worldmodels.checkpoints import CONTROLLER_FILE, describe_training, load_checkpoint, training_history
from worldmodels.controller import LinearControllers, controller_input_size, parameter_count
from worldmodels.dream import DreamBatch
from worldmodels.dream_gradient import GRADIENT_STATE_FILE, ascend_in_dreams, expected_rewards, new_gradient_search
from worldmodels.evolution import STATE_FILE
from worldmodels.mdrnn import MDNRNN, sample_mixture

ENCODE, TRAIN_C = 2, 4
Z, H = 4, 8


def _tiny_m(gaussians: int) -> MDNRNN:
    torch.manual_seed(0)
    mdrnn = MDNRNN(z_size=Z, hidden_size=H, gaussians=gaussians)
    with torch.no_grad():
        mdrnn.done.bias.fill_(-1.0)  # ends likely enough that the done head's gradient counts
    return mdrnn


def _expected_return(mdrnn: MDNRNN, params: torch.Tensor, steps: int = 6) -> torch.Tensor:
    """The summed expected return of 3 dreams (seeds 0-2) driven by controller ``params`` [P]."""
    seeds = [0, 1, 2]
    dreams = DreamBatch(mdrnn, torch.linspace(-1, 1, 3 * Z).reshape(3, Z), seeds, temperature=1.0)
    controller = LinearControllers(params.expand(3, -1), controller_input_size("zh", Z, H))
    earned, _ = expected_rewards(dreams, controller, "zh", torch.ones(3), steps)
    return earned.sum()


def test_gradients_reach_the_controller_through_m_as_finite_differences_say():
    """With one Gaussian per dimension the dream is a smooth function of C's parameters (the
    component choice, whose gradient is only estimated, is fixed), so autograd must agree with
    central differences, through M's LSTM, reward and done heads over several steps."""
    mdrnn = _tiny_m(gaussians=1).double()
    torch.set_default_dtype(torch.float64)
    try:
        params = torch.randn(parameter_count(Z + H), generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5
        params.requires_grad_(True)
        _expected_return(mdrnn, params).backward()
        gradient = params.grad.clone()
        assert gradient.abs().sum() > 0
        for seed in range(3):
            direction = torch.randn(params.shape, generator=torch.Generator().manual_seed(10 + seed), dtype=torch.float64)
            eps = 1e-5
            with torch.no_grad():
                numeric = (_expected_return(mdrnn, params + eps * direction) - _expected_return(mdrnn, params - eps * direction)) / (2 * eps)
            assert float(gradient @ direction) == pytest.approx(float(numeric), rel=1e-5, abs=1e-8)
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_straight_through_sample_has_the_mixtures_mean_and_variance_and_its_gradients_are_unbiased_for_the_mean():
    n = 400_000
    log_pi = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(n, 1, 3).clone().requires_grad_(True)
    mu = torch.tensor([-2.0, 0.5, 3.0]).expand(n, 1, 3).clone().requires_grad_(True)
    log_sigma = torch.log(torch.tensor([0.5, 1.0, 0.3])).expand(n, 1, 3).clone()
    z = sample_mixture(log_pi, mu, log_sigma, generator=torch.Generator().manual_seed(0), straight_through=True)[:, 0]
    pi, m, s = np.array([0.2, 0.5, 0.3]), np.array([-2.0, 0.5, 3.0]), np.array([0.5, 1.0, 0.3])
    mean, variance = (pi * m).sum(), (pi * (s**2 + m**2)).sum() - (pi * m).sum() ** 2
    standard_error = math.sqrt(variance / n)
    assert abs(z.mean().item() - mean) < 5 * standard_error
    assert z.var().item() == pytest.approx(variance, rel=0.01)
    z.sum().backward()
    # d E[z] / d mu_k = pi_k (pathwise, through the chosen component); d E[z] / d logit_k = pi_k (mu_k - E[z])
    # (the straight-through term; exact for the mean because every component's noise averages out)
    assert np.allclose(mu.grad[:, 0].mean(0).numpy(), pi, atol=0.005)
    assert np.allclose(log_pi.grad[:, 0].mean(0).numpy(), pi * (m - mean), atol=0.02)
    plain = sample_mixture(log_pi, mu, log_sigma, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain[:, 0], z.detach())  # the estimate changes the gradient, never the sample


def test_ascent_raises_the_expected_return_of_the_dreams_it_learns_on():
    mdrnn = _tiny_m(gaussians=3)
    for p in mdrnn.parameters():
        p.requires_grad_(False)
    state = new_gradient_search(parameter_count(Z + H), learning_rate=0.05, config={})
    before = _expected_return(mdrnn, state.params.detach(), steps=20).item()
    for _ in range(10):
        dreams = DreamBatch(mdrnn, torch.linspace(-1, 1, 3 * Z).reshape(3, Z), [0, 1, 2], temperature=1.0)
        ascend_in_dreams(dreams, state, "zh", horizon=20, truncation=5)
    after = _expected_return(mdrnn, state.params.detach(), steps=20).item()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # 100 random controllers, a step size 10 times the search's usual start
        random = [_expected_return(mdrnn, torch.randn(state.params.shape, generator=generator), steps=20).item() for _ in range(100)]
    assert after > max(random) > before
    assert all(p.grad is None for p in mdrnn.parameters())  # M is left as it was


def _gradient_search(tmp_path, ckpt, generations: int, *extra: str) -> list[str]:
    return ["--dream", "--gradient", "--series-dir", str(tmp_path / "series"), "--generations", str(generations),
            "--population", "2", "--episodes-per-candidate", "2", "--max-steps", "12", "--truncation", "5", "--check-every", "2",
            "--check-episodes", "1", "--workers", "1", "--gif-steps", "0", "--checkpoint-dir", str(ckpt), *extra]


def test_a_resumed_gradient_search_continues_exactly(tmp_path, scripts):
    ckpt = models_and_series(tmp_path, scripts[ENCODE])
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    for name in ("vae.pt", "mdrnn.pt"):
        (resumed / name).write_bytes((ckpt / name).read_bytes())
    scripts[TRAIN_C].main(_gradient_search(tmp_path, ckpt, 4))
    scripts[TRAIN_C].main(_gradient_search(tmp_path, resumed, 1))
    scripts[TRAIN_C].main(_gradient_search(tmp_path, resumed, 3))  # stopped after 1, then after 3 (mid-way between checks)
    scripts[TRAIN_C].main(_gradient_search(tmp_path, resumed, 4))
    with np.load(ckpt / GRADIENT_STATE_FILE) as one, np.load(resumed / GRADIENT_STATE_FILE) as three:
        for key in ("params", "exp_avg", "exp_avg_sq", "adam_steps"):
            assert np.array_equal(one[key], three[key]), key
        assert float(one["adam_steps"]) == 4 * 3  # 3 updates a generation: steps 0-4, 5-9, 10-11
    # the same dreams, the same returns (the shorter runs also checked C at their ends)
    learning = [[row[k] for k in ("generation", "best", "mean", "worst", "sigma")] for row in log_rows(ckpt / "controller_log.csv")]
    assert learning == [[row[k] for k in ("generation", "best", "mean", "worst", "sigma")]
                        for row in log_rows(resumed / "controller_log.csv")]
    assert learning[0][-1] == "" and log_rows(ckpt / "controller_log.csv")[1]["dream_check_mean"] != ""
    assert log_rows(ckpt / "controller_log.csv")[0]["dream_steps"] == str(2 * 2 * 12)  # 4 dreams, the whole horizon
    kept = load_checkpoint(ckpt / CONTROLLER_FILE, "controller", "")
    assert torch.equal(kept["params"], load_checkpoint(resumed / CONTROLLER_FILE, "controller", "")["params"])
    assert training_history(kept)[-1]["method"] == "gradient"
    assert describe_training(kept).startswith("generation ") and "of a gradient search in the dream" in describe_training(kept)


def test_a_gradient_search_never_resumes_a_cma_search_nor_leaves_one_behind(tmp_path, scripts):
    ckpt = models_and_series(tmp_path, scripts[ENCODE])
    cma = _gradient_search(tmp_path, ckpt, 1)
    cma.remove("--gradient")
    cma[cma.index("--truncation"):cma.index("--truncation") + 2] = []
    scripts[TRAIN_C].main(cma)
    message = stage_error(scripts[TRAIN_C], _gradient_search(tmp_path, ckpt, 1))
    assert f"holds controller.pt, controller_log.csv, {STATE_FILE} from an earlier run but no {GRADIENT_STATE_FILE}" in message
    scripts[TRAIN_C].main(_gradient_search(tmp_path, ckpt, 1, "--restart"))
    assert (ckpt / GRADIENT_STATE_FILE).exists() and not (ckpt / STATE_FILE).exists()  # replaced: never resumed later
    message = stage_error(scripts[TRAIN_C], _gradient_search(tmp_path, ckpt, 2, "--learning-rate", "0.1"))
    assert "--learning-rate 0.02 then, 0.1 now" in message
