"""Stage 01 collects with the exploration walk or with a saved agent, records in every file
what drove it, and adds a new round of episodes beside the old ones without touching them."""

import re

import numpy as np
import pytest
import torch
from helpers import log_rows, save_untrained_agent, save_untrained_models, stage_error, untrained_vae

from worldmodels.checkpoints import fingerprint, load_checkpoint, load_model
from worldmodels.controller import parameter_count
from worldmodels.episodes import list_episodes, read_rollout, read_rollout_source
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.frames import frames_to_tensor_layout
from worldmodels.mdrnn import MDNRNN
from worldmodels.rollout import Agent

COLLECT = 0


def _collect(scripts, out, *flags: str) -> None:
    scripts[COLLECT].main(["--episodes", "2", "--max-steps", "15", "--workers", "1", "--out-dir", str(out), *flags])


def test_a_round_collected_with_an_agent_is_added_beside_the_first_and_says_what_drove_it(tmp_path, scripts):
    params = save_untrained_agent(tmp_path / "agent")
    out = tmp_path / "rollout"
    _collect(scripts, out)  # round one: the exploration walk, seeds 0 and 1
    first_round = {path.name: path.read_bytes() for path in list_episodes(out)}
    _collect(scripts, out, "--first-seed", "100", "--policy", str(tmp_path / "agent"), "--policy-noise", "0.05")
    assert [p.name for p in list_episodes(out)] == ["ep00000000.npz", "ep00000001.npz", "ep00000100.npz", "ep00000101.npz"]
    assert {name: (out / name).read_bytes() for name in first_round} == first_round  # round one untouched
    assert read_rollout_source(out / "ep00000000.npz") == "exploration"
    source = read_rollout_source(out / "ep00000100.npz")
    assert source.startswith(f"agent: controller {fingerprint({'params': torch.as_tensor(params)})} of {tmp_path / 'agent'}")
    assert f"(V {fingerprint(load_model(tmp_path / 'agent' / 'vae.pt', 'vae'))}, M " in source and source.endswith("parameter noise 0.05")
    driven = read_rollout(out / "ep00000100.npz")["action"]
    assert driven.shape == (15, 3) and (driven[:, 1] > 0.5).all()  # the agent's gas, not the walk's 0.3


def test_agent_episodes_are_reproducible_and_the_noise_is_drawn_per_episode(tmp_path, scripts):
    save_untrained_agent(tmp_path / "agent")
    runs = {}
    for name, noise in (("a", "0.5"), ("b", "0.5"), ("still", "0")):
        _collect(scripts, tmp_path / name, "--policy", str(tmp_path / "agent"), "--policy-noise", noise)
        runs[name] = [read_rollout(path)["action"] for path in list_episodes(tmp_path / name)]
    for a, b in zip(runs["a"], runs["b"]):
        np.testing.assert_array_equal(a, b)  # the same seeds: the same noise, the same episodes
    assert not np.allclose(runs["a"][0], runs["a"][1][: len(runs["a"][0])])  # each episode draws its own noise
    assert not np.allclose(runs["a"][0], runs["still"][0])


def test_detours_hand_the_wheel_to_the_exploration_walk_and_m_follows_the_actions_taken(tmp_path, scripts):
    save_untrained_agent(tmp_path / "agent")  # gas 1.0: far from the walk's
    _collect(scripts, tmp_path / "always", "--policy", str(tmp_path / "agent"), "--detours", "1")
    _collect(scripts, tmp_path / "never", "--policy", str(tmp_path / "agent"), "--detours", "0")
    seed = 1
    walk = RandomWalkPolicy(np.random.default_rng([seed, 2]))  # a detour starts at every step it can
    np.testing.assert_array_equal(read_rollout(tmp_path / "always" / "ep00000001.npz")["action"], [walk() for _ in range(15)])
    assert read_rollout_source(tmp_path / "always" / "ep00000001.npz").endswith("parameter noise 0.1, detours 1.0")
    assert (read_rollout(tmp_path / "never" / "ep00000001.npz")["action"][:, 1] > 0.5).all()  # C drove


def test_an_agent_told_the_actions_taken_advances_m_with_them():
    vae, mdrnn = untrained_vae(), MDNRNN(z_size=32, hidden_size=32)
    params = np.random.default_rng(0).normal(0, 0.1, (2, parameter_count(32 + 32))).astype(np.float32)
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    taken = np.array([[0.5, 0.2, 0.0], [-1.0, 0.0, 0.3]], dtype=np.float32)
    agent = Agent(vae, mdrnn, params)
    agent.act(frames, np.ones(2, dtype=bool), taken=taken)
    with torch.no_grad():
        z, _ = vae.encode(torch.as_tensor(frames_to_tensor_layout(frames)))
        _, (h, c) = mdrnn.step(z, torch.as_tensor(taken), mdrnn.initial_state(2))
    torch.testing.assert_close(agent.state[0], h)
    torch.testing.assert_close(agent.state[1], c)


def test_an_agent_whose_models_do_not_belong_together_is_refused(tmp_path, scripts):
    save_untrained_agent(tmp_path / "agent")
    save_untrained_models(tmp_path / "other", hidden_size=16)
    (tmp_path / "agent" / "mdrnn.pt").write_bytes((tmp_path / "other" / "mdrnn.pt").read_bytes())
    message = stage_error(scripts[COLLECT], ["--episodes", "1", "--out-dir", str(tmp_path / "out"), "--policy", str(tmp_path / "agent")])
    assert "controller.pt: built for" in message and "train one for this V and M" in message


@pytest.mark.parametrize("argv, expected", [
    (["--first-seed", "9999999", "--episodes", "2"], "--first-seed + --episodes must stay below 10000000"),
    (["--policy-noise", "-0.1"], "--policy-noise must be at least 0"),
    (["--detours", "0.1"], "--detours needs --policy"),
    (["--detours", "2", "--policy", "."], "--detours is a chance per step, from 0 to 1"),
])
def test_collection_flags_are_checked(scripts, capsys, argv, expected):
    with pytest.raises(SystemExit):
        scripts[COLLECT].parse_args(argv)
    assert expected in capsys.readouterr().err


def test_a_search_with_curiosity_ranks_by_return_plus_surprise_and_keeps_its_weight(tmp_path, scripts):
    save_untrained_models(tmp_path / "ckpt")
    run = ["--generations", "2", "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "10", "--check-every", "1",
           "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(tmp_path / "ckpt")]
    scripts[4].main(run + ["--curiosity", "2.0"])
    rows = log_rows(tmp_path / "ckpt" / "controller_log.csv")
    assert len(rows) == 2 and all(float(row["surprise"]) > 0 for row in rows)
    message = stage_error(scripts[4], run[:1] + ["3"] + run[2:] + ["--curiosity", "1.0"])  # 3 generations, another weight
    assert "cma_state.npz: started with other settings (--curiosity " in message and "pass --restart" in message


def test_a_search_from_a_saved_controller_checks_it_first_and_never_keeps_worse(tmp_path, scripts, capsys):
    save_untrained_agent(tmp_path / "start")
    save_untrained_models(tmp_path / "ckpt")
    run = ["--generations", "1", "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "10", "--check-every", "1",
           "--check-episodes", "2", "--sigma0", "3", "--workers", "1", "--checkpoint-dir", str(tmp_path / "ckpt"),
           "--init-from", str(tmp_path / "start" / "controller.pt")]
    scripts[4].main(run)
    out = capsys.readouterr().out
    checks = re.findall(r"generation (\d)[^\n]*CMA mean on 2 check tracks (-?[\d.]+)", out)
    assert [generation for generation, _ in checks] == ["0", "1"]
    start, first = (float(score) for _, score in checks)
    kept = load_checkpoint(tmp_path / "ckpt" / "controller.pt", "controller", "05_train_controller.py")
    assert kept["check_score"] == pytest.approx(max(start, first), abs=0.05)
    assert kept["generation"] == (0 if start >= first else 1)
    (row,) = log_rows(tmp_path / "ckpt" / "controller_log.csv")
    assert int(row["env_steps"]) == 2 * 10 + 2 * 10 + 2 * 10  # generation 1's two episodes, its check and the start's check
