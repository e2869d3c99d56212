"""04 --action-head: M also predicts the action of the agent that drove an episode, from what C
sees at that step, and the head is written as a controller (imitation_controller.pt)."""

import numpy as np
import torch
from helpers import save_untrained_models, stage_error, write_random_rollouts

from worldmodels.checkpoints import describe_training, load_checkpoint, load_controller_for, load_vae_and_mdrnn
from worldmodels.controller import LinearControllers, controller_features
from worldmodels.data import SeriesEpisodes
from worldmodels.episodes import AGENT_SOURCE, read_series
from worldmodels.mdrnn import MDNRNN, mdrnn_loss, states_before_actions

ENCODE, TRAIN_M, TRAIN_C = 2, 3, 4


def _driven_by_the_head(mdrnn: MDNRNN, steps: int, seed: int) -> dict[str, np.ndarray]:
    """An episode in which every action is the one M's own action head gives for [z_t, h_t]."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(steps, mdrnn.z_size)).astype(np.float32)
    actions, state = [], mdrnn.initial_state(1)
    with torch.no_grad():
        for t in range(steps):
            z = torch.from_numpy(mu[t : t + 1])
            action = mdrnn.forward(z[:, None], torch.zeros(1, 1, 3), state)[0]["action"][:, 0]  # the head at [z_t, h_t]
            actions.append(action[0].numpy())
            _, state = mdrnn.step(z, action, state)
    return {"mu": mu, "logvar": np.full_like(mu, -30.0), "action": np.array(actions), "reward": np.zeros(steps, np.float32),
            "terminated": np.zeros(steps, np.float32), "source": f"{AGENT_SOURCE} the head itself"}


def test_the_action_loss_is_zero_on_episodes_the_head_itself_drove_and_counts_driven_steps_only():
    torch.manual_seed(0)
    mdrnn = MDNRNN(z_size=4, hidden_size=8, action_head=True)
    driven = [_driven_by_the_head(mdrnn, steps, seed) for seed, steps in enumerate((7, 12))]
    walked = driven[0] | {"action": np.random.default_rng(9).uniform(0, 1, (7, 3)).astype(np.float32), "source": "exploration"}
    data = SeriesEpisodes(driven + [walked])
    batch = data.sample(np.arange(3), np.random.default_rng(0))  # logvar -30: z is mu
    with torch.no_grad():
        out, _ = mdrnn(batch["z"], batch["action"])
        assert mdrnn_loss(out, batch)["action"].item() < 1e-10  # the walk's actions, far from the head's, are not counted
        assert mdrnn_loss(out, batch | {"driven": batch["step_mask"]})["action"].item() > 0.01
        mdrnn.action_head.bias += 0.3
        assert mdrnn_loss(mdrnn(batch["z"], batch["action"])[0], batch)["action"].item() > 0.01


def test_the_imitation_controller_acts_exactly_as_the_head_predicts():
    torch.manual_seed(1)
    mdrnn = MDNRNN(z_size=4, hidden_size=8, action_head=True)
    episode = _driven_by_the_head(mdrnn, 10, seed=3)
    z, action = torch.from_numpy(episode["mu"]), torch.from_numpy(episode["action"])
    h, c = states_before_actions(mdrnn, z, action)
    controller = LinearControllers(mdrnn.action_head_params()[None], 4 + 8)
    rows = torch.zeros(len(z), dtype=torch.long)
    assert torch.allclose(controller(controller_features("zh", z, h, c), rows), action, atol=1e-6)


def _collect_and_encode(tmp_path, scripts, agent: bool) -> None:
    save_untrained_models(tmp_path / "ckpt", hidden_size=16)
    write_random_rollouts(tmp_path / "rollout", episodes=3, steps=9)
    if agent:
        write_random_rollouts(tmp_path / "rollout", episodes=3, steps=9, seed=1, first=100, source=f"{AGENT_SOURCE} a test's")
    scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                          "--checkpoint-dir", str(tmp_path / "ckpt")])


def _train_m(tmp_path, *extra: str) -> list[str]:
    return ["--epochs", "2", "--batch-size", "2", "--seq-len", "4", "--hidden-size", "16", "--held-out-fraction", "0.2",
            "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt"), "--action-head", *extra]


def test_m_learns_the_drivers_actions_from_an_m_without_the_head_and_writes_them_as_a_controller(tmp_path, scripts, capsys):
    _collect_and_encode(tmp_path, scripts, agent=True)
    assert read_series(tmp_path / "series" / "ep00000100.npz")["source"] == f"{AGENT_SOURCE} a test's"  # 03 keeps the source
    (tmp_path / "ckpt" / "mdrnn.pt").rename(tmp_path / "start.pt")
    scripts[TRAIN_M].main(_train_m(tmp_path, "--init-from", str(tmp_path / "start.pt")))
    out = capsys.readouterr().out
    assert "(action_head new)" in out and "imitation_controller.pt" in out
    rows = (tmp_path / "ckpt" / "mdrnn_log.csv").read_text().splitlines()
    assert "train_action" in rows[0] and float(rows[2].split(",")[rows[0].split(",").index("held_out_action")]) > 0
    vae, mdrnn = load_vae_and_mdrnn(tmp_path / "ckpt" / "vae.pt", tmp_path / "ckpt" / "mdrnn.pt")
    controller, config = load_controller_for(tmp_path / "ckpt" / "imitation_controller.pt", vae, mdrnn)  # for this very V and M
    assert torch.equal(controller["params"], mdrnn.action_head_params())
    assert describe_training(load_checkpoint(tmp_path / "ckpt" / "imitation_controller.pt", "controller", "")) == (
        "M's action head, imitating a driver")
    scripts[TRAIN_C].main(["--dream", "--gradient", "--series-dir", str(tmp_path / "series"), "--generations", "1", "--population", "2",
                           "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1", "--check-episodes", "1",
                           "--workers", "1", "--gif-steps", "0", "--checkpoint-dir", str(tmp_path / "ckpt"),
                           "--init-from", str(tmp_path / "ckpt" / "imitation_controller.pt")])
    history = load_checkpoint(tmp_path / "ckpt" / "controller.pt", "controller", "")["history"]
    assert history[0]["world"] == "imitation" and history[1]["method"] == "gradient"


def test_an_action_head_without_agent_driven_episodes_is_refused_in_one_line(tmp_path, scripts):
    _collect_and_encode(tmp_path, scripts, agent=False)
    message = stage_error(scripts[TRAIN_M], _train_m(tmp_path))
    assert "no training episode was driven by an agent, so M's action head has nothing to imitate" in message
    assert "01_generate_data.py --policy" in message


def test_series_encoded_before_sources_were_recorded_are_named(tmp_path, scripts):
    _collect_and_encode(tmp_path, scripts, agent=False)
    for path in (tmp_path / "series").glob("ep*.npz"):
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files if key != "source"}
        np.savez(path, **arrays)
    message = stage_error(scripts[TRAIN_M], _train_m(tmp_path))
    assert "do not record what drove them: re-encode them with 03 --overwrite" in message
