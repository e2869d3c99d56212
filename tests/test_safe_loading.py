"""Loading a file never runs code, and a damaged but well-formed checkpoint or search state
gets one line naming the file and the fix."""

import shutil

import numpy as np
import pytest
import torch
from helpers import save_untrained_models, stage_error, write_random_rollouts, write_random_series

from worldmodels.checkpoints import controller_config, load_checkpoint, load_model, save_controller, save_model
from worldmodels.controller import parameter_count
from worldmodels.vision import ConvVAE

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


def _config(ckpt) -> dict:
    """The config of a controller for save_untrained_models' V and M."""
    return controller_config(load_model(ckpt / "vae.pt", "vae"), load_model(ckpt / "mdrnn.pt", "mdrnn"), "zh")


class RunsCode:
    """Unpickling this object calls exec: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def _search_args(ckpt) -> list[str]:
    return ["--generations", "1", "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1",
            "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)]


# (stage, the file planted, the flags that make the stage read it)
READERS = {
    "02-resumes-vae.pt": (TRAIN_V, "ckpt/vae.pt", ["--epochs", "1", "--batch-size", "5", "--data-dir", "{tmp}/rollout"]),
    "03-reads-vae.pt": (ENCODE, "ckpt/vae.pt", ["--rollout-dir", "{tmp}/rollout", "--series-dir", "{tmp}/series"]),
    "04-resumes-mdrnn.pt": (TRAIN_M, "ckpt/mdrnn.pt", ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "32",
                                                       "--series-dir", "{tmp}/series"]),
    "05-reads-vae.pt": (TRAIN_C, "ckpt/vae.pt", _search_args("{tmp}/ckpt")),
    "05-reads-mdrnn.pt": (TRAIN_C, "ckpt/mdrnn.pt", _search_args("{tmp}/ckpt")),
    "05-evaluates-controller.pt": (TRAIN_C, "ckpt/controller.pt", ["--evaluate", "1", "--max-steps", "5", "--workers", "1"]),
    "05-starts-from-init-from": (TRAIN_C, "other/controller.pt", _search_args("{tmp}/ckpt") + ["--init-from", "{tmp}/other/controller.pt"]),
}


@pytest.mark.parametrize("reader", READERS)
def test_a_checkpoint_that_would_run_code_is_refused_by_every_stage_that_reads_it(tmp_path, scripts, reader):
    stage, planted, argv = READERS[reader]
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    write_random_series(tmp_path / "series", episodes=2, steps=10)
    save_untrained_models(tmp_path / "ckpt")
    marker = tmp_path / "code-ran"
    (tmp_path / planted).parent.mkdir(exist_ok=True)
    torch.save({"kind": "controller", "state_dict": {}, "payload": RunsCode(marker)}, tmp_path / planted)
    with pytest.raises(Exception, match="weights_only"):  # torch itself agrees that the file holds code
        torch.load(tmp_path / planted, weights_only=True)
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--checkpoint-dir" not in argv:
        argv += ["--checkpoint-dir", str(tmp_path / "ckpt")]
    message = stage_error(scripts[stage], argv)
    assert f"{tmp_path / planted}: refused: it holds Python objects besides tensors and plain values" in message
    assert not marker.exists()


def test_a_search_state_that_would_run_code_is_never_unpickled(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    marker = tmp_path / "code-ran"
    np.savez(ckpt / "cma_state.npz", meta=np.array([RunsCode(marker)], dtype=object))  # an object array is a pickle inside
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt))
    assert "cma_state.npz: not a readable CMA-ES state (ValueError); delete it or pass --restart" in message
    (ckpt / "cma_state.npz").unlink()
    torch.save(RunsCode(marker), ckpt / "cma_state.pkl")  # the pickle an older version of this code wrote
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt))
    assert "holds cma_state.pkl from an earlier run but no cma_state.npz to resume it from; pass --restart" in message
    scripts[TRAIN_C].main(_search_args(ckpt) + ["--restart"])  # a new search; the pickle is left unread
    assert (ckpt / "controller.pt").exists() and not marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path, scripts):
    """What the stages write loads with weights_only=True (a numpy scalar would not)."""
    write_random_series(tmp_path / "series", episodes=2, steps=10)
    save_untrained_models(tmp_path / "ckpt")
    scripts[TRAIN_M].main(["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "32", "--restart",
                           "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    scripts[TRAIN_C].main(_search_args(tmp_path / "ckpt"))
    for name in ("vae.pt", "mdrnn.pt", "controller.pt"):
        torch.load(tmp_path / "ckpt" / name, weights_only=True)
    save_model(tmp_path / "numpy.pt", "vae", ConvVAE(8), held_out_loss=np.float64(1.0))  # as versions before this one wrote
    with pytest.raises(Exception, match="refused: it holds Python objects"):
        load_checkpoint(tmp_path / "numpy.pt", "vae", "02_train_vae.py")


# --- damaged but well-formed checkpoints ---------------------------------------------------

def _rename_a_weight(checkpoint: dict) -> None:
    checkpoint["state_dict"]["lstm.weight_ih"] = checkpoint["state_dict"].pop("lstm.weight_ih_l0")


def _nan_weight(checkpoint: dict) -> None:
    checkpoint["state_dict"]["lstm.weight_ih_l0"][0, 0] = float("nan")


def _drop_key(key):
    return lambda checkpoint: checkpoint.pop(key)


DAMAGE = {
    "no-state-dict": (_drop_key("state_dict"), "mdrnn.pt: state_dict missing or of the wrong type (written by another version"),
    "renamed-keys": (_rename_a_weight, "mdrnn.pt: its weights do not fit this code's model (missing ['lstm.weight_ih_l0'], "
                                       "unexpected ['lstm.weight_ih']; from another version of the code?)"),
    "nan-weights": (_nan_weight, "mdrnn.pt: 'lstm.weight_ih_l0' holds NaN or inf; delete it and re-run 04_train_rnn.py"),
    "config-of-strings": (lambda c: c.update(config={"z_size": "32"}), "mdrnn.pt: built with z_size='32', expected 32"),
    "bad-config-keys": (lambda c: c.update(config={"z_size": 32, "layers": 2}), "mdrnn.pt: its config {'z_size': 32, 'layers': 2} "
                                                                                "does not build a mdrnn (TypeError); delete it"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_model_checkpoint_is_named_with_what_is_wrong(tmp_path, scripts, damage):
    save_untrained_models(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "mdrnn.pt"
    checkpoint = torch.load(path, weights_only=True)
    change, expected = DAMAGE[damage]
    change(checkpoint)
    torch.save(checkpoint, path)
    assert expected in stage_error(scripts[TRAIN_C], _search_args(tmp_path / "ckpt"))


@pytest.mark.parametrize("damage, expected", [
    ("renamed-keys", "vae.pt: its weights do not fit this code's model (missing ['encoder.0.weight'], unexpected ['conv1.weight']"),
    ("other-optimizer", "vae.pt: its training state does not fit this code (ValueError"),
    ("damaged-progress", "vae.pt: its training state does not fit this code (TypeError"),
    ("no-progress", "vae.pt: holds no training state (a model saved for use only); pass --restart"),
    ("log-of-other-columns", "vae.pt: its log does not fit its 1 epochs or this code's columns; pass --restart"),
])
def test_a_damaged_training_checkpoint_asks_for_restart(tmp_path, scripts, damage, expected):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    argv = ["--epochs", "1", "--batch-size", "5", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    scripts[TRAIN_V].main(argv)
    path = tmp_path / "ckpt" / "vae.pt"
    checkpoint = torch.load(path, weights_only=True)
    if damage == "renamed-keys":
        checkpoint["state_dict"]["conv1.weight"] = checkpoint["state_dict"].pop("encoder.0.weight")
    elif damage == "other-optimizer":
        checkpoint["optimizer"]["param_groups"][0]["params"] = [0]
    elif damage == "damaged-progress":
        checkpoint["progress"]["epochs_done"] = checkpoint["progress"].pop("epoch")
    elif damage == "log-of-other-columns":
        checkpoint["progress"]["log"][0]["loss"] = checkpoint["progress"]["log"][0].pop("train_loss")
    else:
        del checkpoint["progress"]
    torch.save(checkpoint, path)
    message = stage_error(scripts[TRAIN_V], ["--epochs", "2"] + argv[2:])
    assert expected in message and "pass --restart" in message


@pytest.mark.parametrize("damage, expected", [
    ("no-generation", "controller.pt: generation missing or of the wrong type"),
    ("wrong-length", f"controller.pt: (10,) parameters, expected ({parameter_count(64)},); delete it and re-run 05_train_controller.py"),
    ("inf-params", "controller.pt: 'params' holds NaN or inf"),
])
def test_a_damaged_controller_is_named(tmp_path, scripts, damage, expected):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    params = np.zeros(10 if damage == "wrong-length" else parameter_count(64))
    params[0] = np.inf if damage == "inf-params" else 0
    save_controller(ckpt / "controller.pt", params, _config(ckpt), generation=3)
    if damage == "no-generation":
        checkpoint = torch.load(ckpt / "controller.pt", weights_only=True)
        del checkpoint["generation"]
        torch.save(checkpoint, ckpt / "controller.pt")
    assert expected in stage_error(scripts[TRAIN_C], ["--evaluate", "1", "--checkpoint-dir", str(ckpt)])


def test_a_damaged_search_state_is_named(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    run = _search_args(ckpt)[:-2]
    scripts[TRAIN_C].main(run[:1] + ["2"] + run[2:] + ["--checkpoint-dir", str(ckpt)])
    shutil.copytree(ckpt, tmp_path / "good")
    with np.load(ckpt / "cma_state.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mean"] = arrays["mean"] + 1e-9  # round-off, as a replay on another number of BLAS threads gives: the same search
    np.savez(tmp_path / "good" / "cma_state.npz", **arrays)
    arrays["told"][1, 0] += 1.0  # a fitness changed: the replay no longer ends at the saved mean
    np.savez(ckpt / "cma_state.npz", **arrays)
    message = stage_error(scripts[TRAIN_C], run[:1] + ["3"] + run[2:] + ["--checkpoint-dir", str(ckpt)])
    assert "cma_state.npz: replaying it with cma" in message and "does not give the search it saved" in message
    arrays["told"] = arrays["told"][:1]  # a generation missing: the log has more rows than the search
    np.savez(ckpt / "cma_state.npz", **arrays)
    message = stage_error(scripts[TRAIN_C], run[:1] + ["3"] + run[2:] + ["--checkpoint-dir", str(ckpt)])
    assert "cma_state.npz: damaged CMA-ES state (its arrays or log do not fit together)" in message
    scripts[TRAIN_C].main(run[:1] + ["3"] + run[2:] + ["--checkpoint-dir", str(tmp_path / "good")])  # the undamaged copy resumes
