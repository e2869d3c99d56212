"""Dropout in M (04 --dropout): recorded in M's checkpoint, trained from an M without it, and
dreamed with a new mask every step by 05 --dream unless --no-dream-dropout; a search does not
resume in the other kind of dream."""

import pytest
from helpers import save_untrained_models, stage_error, write_random_rollouts, write_random_series

from worldmodels.checkpoints import load_model

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


def _train_m(tmp_path, ckpt: str, *extra: str) -> list[str]:
    return ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "32", "--series-dir", str(tmp_path / "series"),
            "--checkpoint-dir", str(tmp_path / ckpt), *extra]


def _dream_search(tmp_path, *extra: str) -> list[str]:
    return ["--dream", "--series-dir", str(tmp_path / "series"), "--generations", "1", "--population", "2",
            "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1", "--check-episodes", "1", "--workers", "1",
            "--checkpoint-dir", str(tmp_path / "ckpt"), *extra]


def test_m_trains_with_dropout_from_an_m_without_it(tmp_path, scripts, capsys):
    write_random_series(tmp_path / "series", episodes=3, steps=12)
    scripts[TRAIN_M].main(_train_m(tmp_path, "plain"))
    plain = load_model(tmp_path / "plain" / "mdrnn.pt", "mdrnn")
    assert plain.dropout == 0 and "dropout" not in plain.config()  # an M without dropout keeps the config it always had
    scripts[TRAIN_M].main(_train_m(tmp_path, "dropout", "--dropout", "0.1", "--init-from", str(tmp_path / "plain" / "mdrnn.pt")))
    assert "starting from the weights of" in capsys.readouterr().out
    assert load_model(tmp_path / "dropout" / "mdrnn.pt", "mdrnn").dropout == 0.1
    with pytest.raises(SystemExit):  # argparse's usage error
        scripts[TRAIN_M].main(_train_m(tmp_path, "x", "--dropout", "1"))
    assert "--held-out-fraction and --dropout must be in [0, 1)" in capsys.readouterr().err


def test_a_dream_search_dreams_with_m_dropout_masks_unless_told_not_to(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path / "ckpt")
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=12)
    scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                          "--checkpoint-dir", str(tmp_path / "ckpt")])
    scripts[TRAIN_M].main(_train_m(tmp_path, "ckpt", "--dropout", "0.2", "--restart"))
    scripts[TRAIN_C].main(_dream_search(tmp_path))
    assert "with a new dropout mask of h every step (dropout 0.2)" in capsys.readouterr().out
    message = stage_error(scripts[TRAIN_C], _dream_search(tmp_path, "--no-dream-dropout", "--generations", "2"))
    assert "cma_state.npz: started with other settings (--dream-dropout True then, not set now)" in message
    scripts[TRAIN_C].main(_dream_search(tmp_path, "--no-dream-dropout", "--restart"))
    assert "dropout mask" not in capsys.readouterr().out
