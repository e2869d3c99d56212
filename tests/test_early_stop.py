"""Stages 02 and 04 share the epoch loop (worldmodels/training.py); --early-stop N ends it
when N epochs bring no better held-out loss."""

import pytest
import torch
from helpers import save_untrained_models, write_random_rollouts

from worldmodels.mdrnn import MDNRNN
from worldmodels.training import EpochScore, TrainingRun


@pytest.fixture(autouse=True)
def _no_pictures(monkeypatch):
    monkeypatch.setattr("worldmodels.training.draw_curves", lambda log_path: None)  # these logs have no curves to draw


ENCODE, TRAIN_M = 2, 3  # the scripts fixture's stages 03 and 04
HELD_OUT = [3.0, 2.0, 2.5, 2.6, 1.0, 0.5]  # epoch 2 is the best until epoch 5


def _run(tmp_path, early_stop: int) -> TrainingRun:
    model = MDNRNN(z_size=2, hidden_size=4, gaussians=1)
    run = TrainingRun(tmp_path / "model.pt", "model_log.csv", "mdrnn", model, torch.optim.SGD(model.parameters(), lr=0.1),
                      ["epoch", "held_out_loss", "seconds"], weight="steps", early_stop=early_stop)
    run.resume(restart=False)
    return run


def _train(run: TrainingRun, epochs: int = len(HELD_OUT)) -> dict[int, torch.Tensor]:
    """Trains to ``epochs``; returns the weights each epoch ended with (they change every epoch)."""
    weights = {}

    def train_batch(batch, epoch):
        loss = run.model.reward.weight.pow(2).sum()
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        return {"loss": loss.item(), "steps": 1.0}

    def score_epoch(epoch, means):
        weights[epoch] = run.model.reward.weight.detach().clone()
        return EpochScore({"held_out_loss": str(HELD_OUT[epoch - 1])}, HELD_OUT[epoch - 1], "")

    run.train(epochs, lambda epoch: [None], 1, train_batch, score_epoch)
    return weights


def _saved_reward_weight(tmp_path) -> torch.Tensor:
    return torch.load(tmp_path / "model.pt", weights_only=True)["state_dict"]["reward.weight"]


def test_training_stops_after_n_epochs_without_a_better_held_out_loss(tmp_path):
    run = _run(tmp_path, early_stop=2)
    _train(run)
    assert run.progress.epoch == 4  # epochs 3 and 4 did not beat epoch 2
    assert "best 2 in epoch 2 of 4" in run.stalled()


def test_a_stopped_run_stays_stopped_when_run_again(tmp_path, capsys):
    _train(_run(tmp_path, early_stop=2))
    again = _run(tmp_path, early_stop=2)
    assert again.progress.epoch == 4 and again.done(len(HELD_OUT))
    assert "stopped early" in capsys.readouterr().out


def test_without_early_stop_every_epoch_runs(tmp_path):
    run = _run(tmp_path, early_stop=0)
    _train(run)
    assert run.progress.epoch == len(HELD_OUT) and run.stalled() == ""


def test_a_patience_longer_than_the_stall_lets_training_go_on(tmp_path):
    run = _run(tmp_path, early_stop=3)
    _train(run)
    assert run.progress.epoch == len(HELD_OUT)  # epoch 5 beat epoch 2 within 3 epochs


def test_a_stopped_run_keeps_the_best_epochs_weights_not_the_last(tmp_path):
    run = _run(tmp_path, early_stop=2)
    weights = _train(run)
    assert not torch.equal(weights[2], weights[4])
    assert torch.equal(run.model.reward.weight, weights[2])
    assert torch.equal(_saved_reward_weight(tmp_path), weights[2])


def test_a_run_that_ends_past_its_best_epoch_keeps_that_epochs_weights(tmp_path):
    run = _run(tmp_path, early_stop=3)
    weights = _train(run, epochs=4)  # epochs 3 and 4 worse than epoch 2, too few to stop
    assert run.progress.epoch == 4 and run.stalled() == ""
    assert torch.equal(_saved_reward_weight(tmp_path), weights[2]) and not torch.equal(weights[2], weights[4])


def test_a_run_resumed_past_its_best_epoch_goes_back_to_that_epochs_weights(tmp_path):
    weights = _train(_run(tmp_path, early_stop=2), epochs=3)  # stopped by hand after epoch 3, one past the best
    resumed = _run(tmp_path, early_stop=2)
    _train(resumed)
    assert resumed.progress.epoch == 4 and torch.equal(_saved_reward_weight(tmp_path), weights[2])


def test_without_early_stop_the_last_epochs_weights_are_kept(tmp_path):
    weights = _train(_run(tmp_path, early_stop=0))
    assert torch.equal(_saved_reward_weight(tmp_path), weights[len(HELD_OUT)])


def test_stage_04_reports_the_held_out_heads_of_the_weights_it_kept(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path / "ckpt", hidden_size=16)
    write_random_rollouts(tmp_path / "rollout", episodes=5, steps=9)
    scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                          "--checkpoint-dir", str(tmp_path / "ckpt")])
    (tmp_path / "ckpt" / "mdrnn.pt").unlink()
    train_m = ["--epochs", "3", "--early-stop", "5", "--lr", "10", "--batch-size", "2", "--seq-len", "4", "--hidden-size", "16",
               "--held-out-fraction", "0.4", "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    scripts[TRAIN_M].main(train_m)  # a step size this large makes the later epochs worse than the first
    first_run = capsys.readouterr().out
    assert "the best held-out loss was epoch 1's" in first_run
    scripts[TRAIN_M].main(train_m)  # done: reports the heads of the saved weights
    kept = capsys.readouterr().out.split("held-out heads: ")[1].splitlines()[0]
    assert f"held-out heads of the kept weights: {kept}" in first_run
