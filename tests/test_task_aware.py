"""A task-aware V (02 --task-weight): M's reward and done losses reach V's encoder, M's z NLL
never does, and the M trained beside V resumes with it."""

import numpy as np
import torch
from helpers import save_untrained_models, untrained_vae, write_random_rollouts

from worldmodels.checkpoints import VISION, load_checkpoint, load_model
from worldmodels.mdrnn import MDNRNN
from worldmodels.task_aware import STRETCH, stream_stretch_batches, task_aware_loss
from worldmodels.vision import TrainingSettings
from worldmodels.vision.vae import sample_latent, vae_loss

TRAIN_V = 1


def _batch(tmp_path) -> dict[str, np.ndarray]:
    files = write_random_rollouts(tmp_path, episodes=2, steps=STRETCH + 7)
    return next(stream_stretch_batches(files, 2, buffer_episodes=2, seed=0))


def _encoder_gradients(vae, loss: torch.Tensor) -> torch.Tensor:
    vae.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in vae.encoder.parameters()])


def test_stretches_are_consecutive_steps_of_one_episode(tmp_path):
    files = write_random_rollouts(tmp_path, episodes=3, steps=2 * STRETCH + 9)
    batches = list(stream_stretch_batches(files, 2, buffer_episodes=3, seed=1))
    assert len(batches) == 3 and batches[0]["obs"].shape == (2, STRETCH, 64, 64, 3)
    halves = [list(stream_stretch_batches(files, 1, buffer_episodes=3, seed=1, stride=2, offset=k)) for k in (0, 1)]
    assert [len(half) for half in halves] == [3, 3]  # 2 stretches an episode: every other one, from either offset
    episodes = [np.load(path)["action"] for path in files]
    for stretch in (batch["action"][i] for batch in batches for i in range(2)):  # each is a slice of one episode
        assert any(any(np.array_equal(stretch, actions[s : s + STRETCH]) for s in range(len(actions) - STRETCH + 1))
                   for actions in episodes)


def test_m_s_reward_loss_reaches_v_s_encoder_and_its_z_nll_does_not(tmp_path):
    batch, settings, device = _batch(tmp_path), TrainingSettings(), torch.device("cpu")
    vae, mdrnn = untrained_vae(), MDNRNN(z_size=32, hidden_size=16)
    torch.manual_seed(0)
    without_task = _encoder_gradients(vae, task_aware_loss(vae, mdrnn, batch, settings, 0.0, device)["loss"])
    torch.manual_seed(0)  # the same z sample, V's own loss alone
    x = torch.from_numpy(batch["obs"].reshape(-1, 64, 64, 3).transpose(0, 3, 1, 2) / np.float32(255))
    mu, logvar = vae.encode(x)
    own = _encoder_gradients(vae, vae_loss(x, vae.decode(sample_latent(mu, logvar)), mu, logvar)[0])
    torch.testing.assert_close(without_task, own)  # M's NLL, computed in the same loss, left V alone
    torch.manual_seed(0)
    with_task = _encoder_gradients(vae, task_aware_loss(vae, mdrnn, batch, settings, 10.0, device)["loss"])
    assert (with_task - own).abs().max() > 1e-3 * own.abs().max()
    assert mdrnn.reward.weight.grad.abs().sum() > 0 and mdrnn.mdn.weight.grad.abs().sum() > 0  # M learns all its heads


def test_a_task_aware_v_trains_logs_m_s_losses_and_resumes_with_its_m(tmp_path, scripts):
    write_random_rollouts(tmp_path / "rollout", episodes=3, steps=STRETCH + 3)
    save_untrained_models(tmp_path / "m", hidden_size=16)
    argv = ["--batch-size", "100", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path / "v"),
            "--task-weight", "5", "--task-from", str(tmp_path / "m" / "mdrnn.pt")]
    scripts[TRAIN_V].main(["--epochs", "1", *argv])
    first = load_checkpoint(tmp_path / "v" / "vae.pt", VISION, "02")["companion"]
    log = (tmp_path / "v" / "vae_log.csv").read_text()
    assert "train_task_reward" in log and "held_out_recon" in log
    load_model(tmp_path / "v" / "vae.pt", VISION)  # a V like any other for stages 03-05
    scripts[TRAIN_V].main(["--epochs", "2", *argv])
    second = load_checkpoint(tmp_path / "v" / "vae.pt", VISION, "02")["companion"]
    assert not torch.equal(first["lstm.weight_hh_l0"], second["lstm.weight_hh_l0"])  # M went on training

