import numpy as np
import pytest
import torch

from worldmodels.checkpoints import fingerprint, save_model
from worldmodels.controller import parameter_count
from worldmodels.mdrnn import MDNRNN
from worldmodels.parallel import WorkerPool
from worldmodels.rollout import run_agent_episodes, run_agent_parallel
from worldmodels.vae import ConvVAE


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return ConvVAE(32).eval(), MDNRNN(32, 3, 256, 5).eval()


@pytest.mark.parametrize("fast_render", [False, True])
def test_batched_episodes_equal_one_at_a_time(models, fast_render):
    vae, mdrnn = models
    params = np.random.default_rng(0).normal(0, 0.1, (3, parameter_count(288))).astype(np.float32)
    seeds = [11, 12, 13]
    batched = run_agent_episodes(vae, mdrnn, params, seeds, max_steps=30, patience=10, fast_render=fast_render)
    for i in range(3):
        alone = run_agent_episodes(vae, mdrnn, params[i : i + 1], seeds[i : i + 1], max_steps=30, patience=10,
                                   fast_render=fast_render)
        assert alone.returns[0] == pytest.approx(batched.returns[i], abs=1e-9)
        assert alone.steps[0] == batched.steps[i]


def test_episodes_spread_over_worker_processes_equal_one_batch(models, tmp_path):
    vae, mdrnn = models
    save_model(tmp_path / "vae.pt", "vae", vae)
    save_model(tmp_path / "mdrnn.pt", "mdrnn", mdrnn, made_from={"vae": fingerprint(vae)})
    params = np.random.default_rng(1).normal(0, 0.1, (4, parameter_count(288))).astype(np.float32)
    seeds = [21, 22, 23, 24]
    batched = run_agent_episodes(vae, mdrnn, params, seeds, max_steps=25, fast_render=True)
    with WorkerPool(2) as pool:
        spread = run_agent_parallel(pool, str(tmp_path / "vae.pt"), str(tmp_path / "mdrnn.pt"), params, seeds,
                                    max_steps=25, fast_render=True, max_envs_per_job=1)
    np.testing.assert_allclose(spread.returns, batched.returns, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(spread.steps, batched.steps)


def test_patience_ends_episodes_without_progress(models):
    vae, mdrnn = models
    params = np.zeros((1, parameter_count(32)), dtype=np.float32)
    params[0, -1] = 10.0  # brake bias: the car never moves, so it never earns a reward
    params[0, -2] = -10.0  # no gas
    result = run_agent_episodes(vae, mdrnn, params, [3], max_steps=200, patience=20, use_hidden=False)
    # the first step pays for the tile the car starts on; then 20 steps without a reward
    assert result.steps[0] == 1 + 20


def _square(x):
    return x * x


def _fail(x):
    raise RuntimeError(f"bad item {x}")


def test_worker_pool_keeps_order_in_process_and_across_processes():
    with WorkerPool(1) as pool:
        assert pool.map(_square, range(5)) == [0, 1, 4, 9, 16]
    with WorkerPool(2) as pool:
        assert pool.map(_square, range(7)) == [x * x for x in range(7)]


def test_worker_exception_reaches_the_caller_with_the_workers_traceback():
    with WorkerPool(2) as pool, pytest.raises(RuntimeError, match="bad item 3") as raised:
        pool.map(_fail, [3])
    assert 'in _fail\n    raise RuntimeError(f"bad item {x}")' in str(raised.value.__cause__)  # the traceback in the worker
