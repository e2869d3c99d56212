"""A controller that reads [z, h, c] (05 --inputs zhc) reads exactly the state the real
rollouts and the dreams give it: with zero weights on c it drives as the [z, h] controller
with the same other weights, on real tracks and in dreams; with weights on c it reads M's
cell state before each action; its config is its own; and a search of [z, h, c] controllers
starts from a [z, h] one widened with zeros, so it starts from exactly how that one drives,
and steps on the weights that read c by CELL_STEP of its step on the rest (c is not bounded
as h is)."""

import numpy as np
import pytest
import torch
from helpers import save_untrained_models

from worldmodels.checkpoints import (controller_config, controller_inputs, load_controller, load_controller_for, load_model,
                                     load_search_start, save_controller)
from worldmodels.controller import (CELL_STEP, LinearControllers, controller_input_size, parameter_count, search_step_scales,
                                    widen_controller)
from worldmodels.dream import DreamBatch, run_dream_episodes
from worldmodels.errors import DataError
from worldmodels.evolution import STATE_FILE, new_search
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.mdrnn import MDNRNN
from worldmodels.rollout import Agent, run_agent_episodes
from worldmodels.vision import ConvVAE

Z, H = 32, 16


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return ConvVAE(Z).eval(), MDNRNN(Z, 3, H, 2).eval()


def _with_cell_weights(params_zh: np.ndarray, cell_weights: np.ndarray) -> np.ndarray:
    """[B, P] of [z, h] controllers -> [B, P'] of [z, h, c] controllers: the same weights on z and
    h, ``cell_weights`` [B, 3, H] on c, the same biases (the flat layout: W row-major, then b)."""
    batch = len(params_zh)
    weight = params_zh[:, :3 * (Z + H)].reshape(batch, 3, Z + H)
    return np.concatenate([np.concatenate([weight, cell_weights], axis=2).reshape(batch, -1), params_zh[:, -3:]], axis=1)


def test_input_sizes_and_parameter_counts():
    assert [controller_input_size(inputs, 32, 256) for inputs in ("z", "zh", "zhc")] == [32, 288, 544]
    assert parameter_count(controller_input_size("zhc", 32, 256)) == 1635


def test_widening_puts_zero_weights_on_what_was_not_read_and_keeps_the_rest():
    params = np.random.default_rng(5).normal(0, 1, (1, parameter_count(Z + H))).astype(np.float32)
    widened = widen_controller(torch.from_numpy(params[0]), "zh", "zhc", Z, H).numpy()
    np.testing.assert_array_equal(widened, _with_cell_weights(params, np.zeros((1, 3, H), np.float32))[0])
    from_z = widen_controller(torch.arange(parameter_count(Z), dtype=torch.float32), "z", "zh", Z, H).reshape(-1)
    assert torch.equal(from_z[:3 * (Z + H)].reshape(3, Z + H)[:, Z:], torch.zeros(3, H)) and torch.equal(from_z[-3:], torch.arange(96, 99.0))
    with pytest.raises(ValueError):
        widen_controller(torch.from_numpy(widened), "zhc", "zh", Z, H)


def test_with_no_weight_on_c_it_drives_real_tracks_as_the_z_h_controller(models):
    vae, mdrnn = models
    params = np.random.default_rng(0).normal(0, 0.3, (2, parameter_count(Z + H))).astype(np.float32)
    zh = run_agent_episodes(vae, mdrnn, params, [5, 6], max_steps=40, inputs="zh", fast_render=True)
    widened = np.stack([widen_controller(torch.from_numpy(p), "zh", "zhc", Z, H).numpy() for p in params])
    zhc = run_agent_episodes(vae, mdrnn, widened, [5, 6], max_steps=40, inputs="zhc", fast_render=True)
    np.testing.assert_array_equal(zh.returns, zhc.returns)
    np.testing.assert_array_equal(zh.steps, zhc.steps)


def test_the_agent_reads_ms_cell_state_before_each_action(models):
    vae, mdrnn = models
    rng = np.random.default_rng(1)
    params = _with_cell_weights(np.zeros((1, parameter_count(Z + H)), np.float32), rng.normal(0, 1, (1, 3, H)).astype(np.float32))
    agent, active = Agent(vae, mdrnn, params, "zhc"), np.ones(1, dtype=bool)
    controller = LinearControllers(torch.from_numpy(params), Z + 2 * H)
    for _ in range(4):
        frames = rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
        h, c = agent.state[0][0].clone(), agent.state[1][0].clone()
        with torch.no_grad():
            z, _ = vae.encode(torch.from_numpy(frames_to_tensor_layout(frames)))
            expected = controller(torch.cat([z, h, c], dim=1)).numpy()
        np.testing.assert_allclose(agent.act(frames, active), expected, atol=1e-6)
    assert agent.state[1].abs().sum() > 0  # c moved, so the check above was not of zeros


def test_dreams_give_a_z_h_c_controller_the_dreams_state(models):
    _, mdrnn = models
    z0 = torch.randn(3, Z)
    params = np.random.default_rng(2).normal(0, 0.3, (3, parameter_count(Z + H))).astype(np.float32)
    zh = run_dream_episodes(mdrnn, params, z0.numpy(), [1, 2, 3], temperature=1.0, max_steps=50, inputs="zh")
    widened = np.stack([widen_controller(torch.from_numpy(p), "zh", "zhc", Z, H).numpy() for p in params])
    zhc = run_dream_episodes(mdrnn, widened, z0.numpy(), [1, 2, 3], temperature=1.0, max_steps=50, inputs="zhc")
    np.testing.assert_array_equal(zh.returns, zhc.returns)
    read = _with_cell_weights(params, np.full((3, 3, H), 5.0, np.float32))
    assert not np.array_equal(run_dream_episodes(mdrnn, read, z0.numpy(), [1, 2, 3], 1.0, 50, inputs="zhc").returns, zh.returns)
    dreams = DreamBatch(mdrnn, z0, [1, 2, 3], 1.0)
    dreams.step(torch.zeros(3, 3))
    assert torch.equal(dreams.controller_input("zhc"), torch.cat([dreams.z, dreams.state[0][0], dreams.state[1][0]], dim=1))


def test_a_z_h_c_controller_records_what_it_reads_and_is_refused_as_a_z_h_one(models, tmp_path):
    vae, mdrnn = models
    config = controller_config(vae, mdrnn, "zhc")
    assert controller_inputs(config) == "zhc" and config["input_size"] == Z + 2 * H
    assert "use_cell" not in controller_config(vae, mdrnn, "zh")  # [z, h] configs stay as they were
    save_controller(tmp_path / "controller.pt", np.zeros(parameter_count(Z + 2 * H), np.float32), config, generation=0)
    with pytest.raises(DataError):
        load_controller(tmp_path / "controller.pt", controller_config(vae, mdrnn, "zh"))


def test_a_saved_z_h_c_controller_is_evaluated_without_being_told_what_it_reads(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path)
    vae, mdrnn = load_model(tmp_path / "vae.pt", "vae"), load_model(tmp_path / "mdrnn.pt", "mdrnn")
    config = controller_config(vae, mdrnn, "zhc")
    save_controller(tmp_path / "controller.pt", np.zeros(parameter_count(config["input_size"]), np.float32), config, generation=0)
    scripts[4].main(["--evaluate", "2", "--max-steps", "5", "--workers", "1", "--gif-steps", "0", "--tracks", "validation",
                     "--checkpoint-dir", str(tmp_path)])
    assert "on 2 validation tracks" in capsys.readouterr().out


def test_a_z_h_c_search_starts_from_a_z_h_controller_widened_and_a_z_h_search_refuses_a_z_h_c_one(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path)
    vae, mdrnn = load_model(tmp_path / "vae.pt", "vae"), load_model(tmp_path / "mdrnn.pt", "mdrnn")
    zh_config = controller_config(vae, mdrnn, "zh")
    params = np.random.default_rng(4).normal(0, 0.3, parameter_count(zh_config["input_size"])).astype(np.float32)
    save_controller(tmp_path / "zh.pt", params, zh_config, generation=7)
    start = load_search_start(tmp_path / "zh.pt", controller_config(vae, mdrnn, "zhc"))
    assert torch.equal(start["params"], widen_controller(torch.from_numpy(params), "zh", "zhc", vae.z_size, mdrnn.hidden_size))
    assert start["generation"] == 7
    scripts[4].main(["--inputs", "zhc", "--init-from", str(tmp_path / "zh.pt"), "--max-steps", "5", "--workers", "1",
                     "--generations", "1", "--population", "2", "--episodes-per-candidate", "1", "--check-every", "1",
                     "--check-episodes", "1", "--checkpoint-dir", str(tmp_path)])
    assert "generation 0 (the starting controller)" in capsys.readouterr().out
    assert controller_inputs(load_controller_for(tmp_path / "controller.pt", vae, mdrnn)[1]) == "zhc"
    with pytest.raises(DataError, match="reads zhc, more than this search's controllers"):
        load_search_start(tmp_path / "controller.pt", zh_config)


def test_a_z_h_c_search_steps_on_the_weights_that_read_c_by_cell_step_of_its_step_on_the_rest():
    stds = search_step_scales("zhc", Z, H)
    weight = stds[:3 * (Z + 2 * H)].reshape(3, Z + 2 * H)
    assert (weight[:, Z + H:] == CELL_STEP).all() and (weight[:, :Z + H] == 1).all() and (stds[-3:] == 1).all()
    assert search_step_scales("zh", Z, H) is None and search_step_scales("z", Z, H) is None
    state = new_search(len(stds), 0.1, 200, seed=0, config={}, stds=stds)
    spread = np.asarray(state.es.ask()).std(axis=0)[:3 * (Z + 2 * H)].reshape(3, Z + 2 * H)
    assert spread[:, Z + H:].mean() / spread[:, :Z + H].mean() == pytest.approx(CELL_STEP, rel=0.1)


def test_a_z_h_c_search_saves_its_steps_and_resumes_with_them(tmp_path, scripts):
    save_untrained_models(tmp_path)
    vae, mdrnn = load_model(tmp_path / "vae.pt", "vae"), load_model(tmp_path / "mdrnn.pt", "mdrnn")
    search = ["--inputs", "zhc", "--max-steps", "5", "--workers", "1", "--population", "4", "--episodes-per-candidate", "1",
              "--check-every", "1", "--check-episodes", "1", "--gif-steps", "0", "--checkpoint-dir", str(tmp_path)]
    scripts[4].main(search + ["--generations", "1"])
    with np.load(tmp_path / STATE_FILE) as saved:
        assert np.array_equal(saved["stds"], search_step_scales("zhc", vae.z_size, mdrnn.hidden_size))
    scripts[4].main(search + ["--generations", "2"])  # a replay without the steps would not give the saved mean
    with np.load(tmp_path / STATE_FILE) as saved:
        assert len(saved["told"]) == 2
