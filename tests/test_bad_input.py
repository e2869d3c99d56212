"""Bad input: every stage stops with one line naming the file and the fix, and a non-zero exit."""

import argparse
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, save_untrained_models, stage_error, untrained_vae, write_random_rollouts, write_random_series

import worldmodels.vision.vae as vae_module
from worldmodels.atomic import remove_stale_temp_files
from worldmodels.checkpoints import fingerprint, save_model
from worldmodels.cli import finite_float
from worldmodels.episodes import list_episodes, read_series, write_initial_latents
from worldmodels.mdrnn import MDNRNN
from worldmodels.vision import ConvVAE

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


# --- a previous stage has not run ---------------------------------------------------------

@pytest.fixture
def folders(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path


@pytest.mark.parametrize("stage, argv, expected", [
    (TRAIN_V, ["--data-dir", "{tmp}/nowhere"], "nowhere: no such folder; run 01_generate_data.py first"),
    (TRAIN_V, ["--data-dir", "{tmp}/empty"], "empty: no episode files (ep*.npz) in the folder; run 01_generate_data.py first"),
    (ENCODE, ["--rollout-dir", "{tmp}/rollout", "--checkpoint-dir", "{tmp}/empty"], "vae.pt: not found; run 02_train_vae.py first"),
    (TRAIN_M, ["--series-dir", "{tmp}/empty"], "run 03_generate_rnn_data.py first"),
    (TRAIN_C, ["--checkpoint-dir", "{tmp}/v_only"], "mdrnn.pt: not found; run 04_train_rnn.py first"),
    (TRAIN_C, ["--checkpoint-dir", "{tmp}/models", "--evaluate", "2"], "controller.pt: not found; run 05_train_controller.py first"),
    (TRAIN_C, ["--checkpoint-dir", "{tmp}/models", "--dream", "--series-dir", "{tmp}/empty"],
     "initial_latents.npz: not found; run 03_generate_rnn_data.py first"),
], ids=["02-no-folder", "02-empty-folder", "03-no-V", "04-no-series", "05-no-M", "05-no-controller", "05-no-first-latents"])
def test_a_missing_previous_stage_is_named(folders, scripts, stage, argv, expected):
    write_random_rollouts(folders / "rollout", episodes=1, steps=5)
    save_untrained_models(folders / "models")
    (folders / "v_only").mkdir()
    shutil.copy(folders / "models" / "vae.pt", folders / "v_only")
    argv = [a.format(tmp=folders) for a in argv]
    assert expected in stage_error(scripts[stage], argv)


# --- damaged episode files -----------------------------------------------------------------

def _damage(path, kind: str) -> str:
    """Damage a rollout file in one way; returns what the error must say."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    steps = len(arrays["action"])
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return "unreadable"
    if kind == "not-a-zip":
        path.write_bytes(b"these are not the frames you are looking for")
        return "unreadable"
    if kind == "missing-key":
        del arrays["reward"]
        expected = "missing keys ['reward']"
    elif kind == "frame-shape":
        arrays["obs"] = np.zeros((steps, 96, 96, 3), dtype=np.uint8)
        expected = f"'obs' is uint8 ({steps}, 96, 96, 3), expected uint8 ({steps}, 64, 64, 3)"
    elif kind == "frame-dtype":
        arrays["obs"] = arrays["obs"].astype(np.float32)
        expected = "'obs' is float32"
    elif kind == "action-shape":
        arrays["action"] = arrays["action"][:, :2]
        expected = f"'action' is float32 ({steps}, 2), expected float32 ({steps}, 3)"
    elif kind == "nan-reward":
        arrays["reward"][1] = np.nan
        expected = "'reward' holds NaN or inf"
    np.savez_compressed(path, **arrays)
    return expected


DAMAGE = ["truncated", "not-a-zip", "missing-key", "frame-shape", "frame-dtype", "action-shape", "nan-reward"]


@pytest.mark.parametrize("kind", DAMAGE)
@pytest.mark.parametrize("stage", [TRAIN_V, ENCODE], ids=["02", "03"])
def test_a_damaged_rollout_is_named_with_what_is_wrong(tmp_path, scripts, stage, kind):
    paths = write_random_rollouts(tmp_path / "rollout", episodes=3, steps=10)
    expected = _damage(paths[1], kind)
    if stage == ENCODE:
        save_untrained_models(tmp_path / "ckpt")
    argv = (["--epochs", "1", "--batch-size", "5", "--data-dir"] if stage == TRAIN_V else ["--series-dir", str(tmp_path / "series"), "--rollout-dir"])
    message = stage_error(scripts[stage], argv + [str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert f"{paths[1]}: " in message and expected in message
    assert "delete the file and re-run" in message and "--skip-bad-files" in message


@pytest.mark.parametrize("stage", [TRAIN_V, ENCODE], ids=["02", "03"])
def test_skip_bad_files_leaves_damaged_rollouts_out_and_counts_them(tmp_path, scripts, capsys, stage):
    paths = write_random_rollouts(tmp_path / "rollout", episodes=4, steps=10)
    _damage(paths[0], "truncated")
    _damage(paths[2], "nan-reward")
    ckpt, series = tmp_path / "ckpt", tmp_path / "series"
    if stage == TRAIN_V:
        scripts[TRAIN_V].main(["--epochs", "1", "--batch-size", "5", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir",
                               str(ckpt), "--skip-bad-files"])
        assert (ckpt / "vae.pt").exists()
    else:
        save_untrained_models(ckpt)
        scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(series), "--checkpoint-dir", str(ckpt),
                              "--skip-bad-files"])
        assert [p.name for p in list_episodes(series)] == [paths[1].name, paths[3].name]
    printed = capsys.readouterr()
    assert "skipped 2 of 4 episode files that cannot be used (--skip-bad-files)" in printed.err
    assert f"warning: skipping {paths[0]}: unreadable" in printed.err


@pytest.mark.parametrize("kind", ["nan-latent", "latent-dtype", "truncated"])
def test_a_damaged_series_file_is_named(tmp_path, scripts, kind):
    paths = write_random_series(tmp_path / "series", episodes=3, steps=10)
    arrays = read_series(paths[2])
    if kind == "truncated":
        paths[2].write_bytes(paths[2].read_bytes()[:500])
        expected = "unreadable"
    elif kind == "latent-dtype":
        np.savez(paths[2], **(arrays | {"mu": arrays["mu"].astype(np.float32)}))
        expected = "'mu' is float32 (10, 32), expected float16 [10, Z]"
    else:
        arrays["mu"][3, 0] = np.inf
        np.savez(paths[2], **arrays)
        expected = "'mu' holds NaN or inf; delete the file and re-run 03_generate_rnn_data.py"
    message = stage_error(scripts[TRAIN_M], ["--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert f"{paths[2]}: " in message and expected in message


@pytest.mark.parametrize("z_size", [32, 16], ids=["same-size", "other-size"])
def test_series_from_two_different_vs_are_refused(tmp_path, scripts, z_size):
    write_random_series(tmp_path / "series", episodes=2, steps=10, z_size=32, vae="aaaaaaaaaaaa")
    odd = write_random_series(tmp_path / "odd", episodes=3, steps=10, z_size=z_size, vae="bbbbbbbbbbbb")[2]
    shutil.copy(odd, tmp_path / "series")
    message = stage_error(scripts[TRAIN_M], ["--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert "ep00000002.npz: encoded by V bbbbbbbbbbbb, but ep00000000.npz by V aaaaaaaaaaaa: the series come from different Vs; " \
           "re-run 03_generate_rnn_data.py" in message


# --- checkpoints and states built with other sizes or settings ----------------------------

def test_checkpoints_built_with_other_sizes_are_refused(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    write_random_series(tmp_path / "series", episodes=2, steps=10)

    save_model(ckpt / "vae.pt", "vae", ConvVAE(16))
    message = stage_error(scripts[TRAIN_V], ["--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(ckpt)])
    assert "vae.pt: built with z_size=16, not z_size=32; pass --restart" in message

    save_model(tmp_path / "m_only" / "mdrnn.pt", "mdrnn", MDNRNN(hidden_size=16))
    message = stage_error(scripts[TRAIN_M], ["--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "m_only")])
    assert "mdrnn.pt: built with hidden_size=16, not hidden_size=256; pass --restart" in message

    shutil.copy(tmp_path / "m_only" / "mdrnn.pt", ckpt)
    message = stage_error(scripts[TRAIN_C], ["--checkpoint-dir", str(ckpt)])  # V's z is 16, M's 32
    assert "mdrnn.pt: built with z_size=32, expected 16; re-run 04_train_rnn.py" in message


def test_a_controller_or_search_made_for_other_models_is_refused(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    run = ["--generations", "1", "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1",
           "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)]
    scripts[TRAIN_C].main(run)
    save_model(ckpt / "mdrnn.pt", "mdrnn", MDNRNN(hidden_size=8), made_from={"vae": fingerprint(untrained_vae())})  # M retrained since
    message = stage_error(scripts[TRAIN_C], ["--evaluate", "1", "--checkpoint-dir", str(ckpt)])
    assert "controller.pt: built for" in message and "train one for this V and M with 05_train_controller.py --restart" in message
    message = stage_error(scripts[TRAIN_C], run[:-2] + ["--generations", "2", "--checkpoint-dir", str(ckpt)])
    assert "cma_state.npz: started with other settings (hidden_size " in message and "; input_size " in message
    assert "; M " in message and "8 now" in message and "pass --restart to start a new search" in message

    np.savez(ckpt / "cma_state.npz", x=np.zeros(3))
    assert "cma_state.npz: not a readable CMA-ES state (KeyError); delete it or pass --restart" in stage_error(scripts[TRAIN_C], run)
    (ckpt / "cma_state.npz").write_bytes(b"\x80garbage")
    assert "cma_state.npz: not a readable CMA-ES state" in stage_error(scripts[TRAIN_C], run)


def test_first_latents_of_another_size_are_refused(tmp_path, scripts):
    save_untrained_models(tmp_path / "ckpt")
    write_initial_latents(tmp_path / "series" / "initial_latents.npz", ["ep0"], np.zeros((1, 16)), np.zeros((1, 16)),
                          fingerprint(untrained_vae()))
    message = stage_error(scripts[TRAIN_C], ["--dream", "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert "initial_latents.npz: latents of size 16, but M models z of size 32" in message


@pytest.mark.parametrize("content", [b"garbage", None], ids=["damaged", "other-kind"])
def test_a_damaged_or_wrong_checkpoint_is_named(tmp_path, scripts, content):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    if content is None:
        shutil.copy(ckpt / "vae.pt", ckpt / "mdrnn.pt")
        expected = "mdrnn.pt: not a mdrnn checkpoint but a 'vae' one; re-run 04_train_rnn.py"
    else:
        (ckpt / "mdrnn.pt").write_bytes(content)
        expected = "mdrnn.pt: unreadable (UnpicklingError); delete it and re-run 04_train_rnn.py"
    assert expected in stage_error(scripts[TRAIN_C], ["--checkpoint-dir", str(ckpt)])


# --- training guards ------------------------------------------------------------------------

def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, scripts, monkeypatch):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    argv = ["--batch-size", "5", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    train_v = scripts[TRAIN_V]
    train_v.main(["--epochs", "1"] + argv)
    good = (tmp_path / "ckpt" / "vae.pt").read_bytes()

    real_loss = vae_module.vae_loss
    def nan_loss(*args, **kwargs):
        loss, recon, kl = real_loss(*args, **kwargs)
        return loss * torch.nan, recon, kl
    monkeypatch.setattr(vae_module, "vae_loss", nan_loss)  # what the VAE's train_step calls
    message = stage_error(train_v, ["--epochs", "2"] + argv)
    assert "vae.pt: loss became nan in epoch 2; the last good checkpoint is kept" in message
    assert (tmp_path / "ckpt" / "vae.pt").read_bytes() == good

    monkeypatch.setattr(vae_module, "vae_loss", real_loss)
    train_v.main(["--epochs", "2", "--lr", "3e-5"] + argv)  # the fix the message suggests: resume with a lower rate
    assert torch.load(tmp_path / "ckpt" / "vae.pt", weights_only=True)["optimizer"]["param_groups"][0]["lr"] == 3e-5


# --- flags ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage, argv, expected", [
    (COLLECT, ["--episodes", "0"], "--episodes must be at least 1, got 0"),
    (TRAIN_V, ["--held-out-fraction", "1.5"], "--held-out-fraction must be in [0, 1)"),
    (TRAIN_V, ["--lr", "-1"], "--lr must be positive"),
    (TRAIN_V, ["--bar-weight", "0"], "--bar-weight must be positive"),
    (TRAIN_V, ["--task-weight", "1"], "--task-weight needs --task-from MDRNN"),
    (ENCODE, ["--batch-size", "0"], "--batch-size must be at least 1"),
    (TRAIN_M, ["--gaussians", "0"], "--gaussians must be at least 1"),
    (TRAIN_C, ["--population", "1"], "--population must be at least 2"),
    (TRAIN_C, ["--temperature", "0"], "--temperature must be positive"),
    (TRAIN_C, ["--generations", "ten"], "argument --generations: invalid int value: 'ten'"),
    (TRAIN_C, ["--evaluate", "0"], "--evaluate must be at least 1, got 0"),
    (TRAIN_C, ["--dream", "--curiosity", "0.1"], "--curiosity rewards M's surprise at real frames; a dream has none"),
    (TRAIN_C, ["--detours", "1.5"], "--detours is a chance per step, from 0 to 1, and drives real tracks"),
    (TRAIN_C, ["--dream", "--detours", "0.01"], "--detours is a chance per step, from 0 to 1, and drives real tracks"),
    (TRAIN_C, ["--dream", "--disagreement", "1.0"], "--disagreement must be non-negative and needs --members 2 or more"),
    (TRAIN_C, ["--dream", "--z-disagreement", "1.0"], "--z-disagreement must be non-negative and needs --members 2 or more"),
    (TRAIN_C, ["--dream", "--members", "2", "--z-quantile", "1.5"], "--z-quantile is a quantile, from 0 to 1, got 1.5"),
    (TRAIN_C, ["--members", "0"], "--members must be at least 1, got 0"),
    (TRAIN_C, ["--members", "3"], "--members are Ms to dream in: add --dream"),
    (TRAIN_M, ["--member", "-1"], "--member must be at least 0, got -1"),
    (TRAIN_C, ["--sigma0", "nan"], "argument --sigma0: must be a finite number, got nan"),
    (TRAIN_C, ["--temperature", "warm"], "argument --temperature: not a number: 'warm'"),
    (COLLECT, ["--first-seed", "-5"], "argument --first-seed: must be from 0 to 2147483647, got -5"),
    (TRAIN_V, ["--seed", "-1"], "argument --seed: must be from 0 to 2147483647, got -1"),
    (TRAIN_M, ["--seed", "-1"], "argument --seed: must be from 0 to 2147483647, got -1"),
    (TRAIN_C, ["--seed", "-2"], "argument --seed: must be from 0 to 2147483647, got -2"),
    (TRAIN_C, ["--seed", "99999999999"], "argument --seed: must be from 0 to 2147483647, got 99999999999"),
    (TRAIN_C, ["--first-track", "-5"], "argument --first-track: must be from 0 to 2147483647, got -5"),
    (TRAIN_C, ["--evaluate", "--first-track", "2147483600"], "--first-track + the episodes must stay below 2147483647"),
    (TRAIN_C, ["--tracks", "training"], "argument --tracks: invalid choice: 'training'"),
    (TRAIN_C, ["--gradient"], "--gradient learns through M's dream: add --dream"),
    (TRAIN_C, ["--dream", "--gradient", "--truncation", "0"], "--learning-rate must be positive and --truncation at least 1"),
    (TRAIN_C, ["--paired-with", "evaluation.csv"], "--paired-with compares an evaluation with another: add --evaluate"),
])
def test_an_invalid_flag_value_is_refused_with_one_line(scripts, capsys, stage, argv, expected):
    with pytest.raises(SystemExit) as stopped:
        scripts[stage].parse_args(argv)
    assert stopped.value.code == 2
    assert expected in capsys.readouterr().err.splitlines()[-1]


def _parser(script, monkeypatch) -> argparse.ArgumentParser:
    """The stage's argument parser, caught as its parse_args() is called."""
    caught = []

    def catch(parser, args=None, namespace=None):
        caught.append(parser)
        raise LookupError
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", catch)
        with pytest.raises(LookupError):
            script.parse_args([])
    return caught[0]


STAGES = [COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C]


@pytest.mark.parametrize("stage", STAGES, ids=["01", "02", "03", "04", "05"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_flag_refuses_nan_and_infinity(scripts, capsys, monkeypatch, stage, value):
    actions = _parser(scripts[stage], monkeypatch)._actions
    assert not [a.dest for a in actions if a.type is float], "float flags take type=finite_float"
    for action in actions:
        if action.type is finite_float:
            with pytest.raises(SystemExit) as stopped:
                scripts[stage].parse_args([f"{action.option_strings[0]}={value}"])  # "=": "-inf" alone reads as a flag
            assert stopped.value.code == 2
            assert f"argument {action.option_strings[0]}: must be a finite number, got {value}" in capsys.readouterr().err


@pytest.mark.parametrize("stage", STAGES, ids=["01", "02", "03", "04", "05"])
def test_every_folder_flag_refuses_a_file(tmp_path, scripts, capsys, monkeypatch, stage):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    folders = [a for a in _parser(scripts[stage], monkeypatch)._actions if a.dest.endswith("_dir")]
    assert folders
    for action in folders:
        with pytest.raises(SystemExit) as stopped:
            scripts[stage].parse_args([action.option_strings[0], str(a_file)])
        assert stopped.value.code == 2
        assert f"{action.option_strings[0]}: {a_file} is a file, not a folder" in capsys.readouterr().err


# --- as the user sees it ----------------------------------------------------------------------

def test_a_stage_process_prints_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "02_train_vae.py"), "--data-dir", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nowhere'}: no such folder; run 01_generate_data.py first "
                                                  "(or pass the folder it wrote to)"]


def test_temporary_files_of_stopped_writers_are_removed_and_live_ones_kept(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    host = socket.gethostname()
    stale = tmp_path / f".ep00000001.npz.{dead_pid}@{host}.k3j2h1g0.tmp"
    live = tmp_path / f".ep00000002.npz.{os.getpid()}@{host}.a1b2c3d4.tmp"
    elsewhere = tmp_path / f".ep00000003.npz.{dead_pid}@another-{host}.a1b2c3d4.tmp"
    for path in (stale, live, elsewhere):
        path.write_bytes(b"half a file")
    assert remove_stale_temp_files(tmp_path) == 1
    assert not stale.exists() and live.exists() and elsewhere.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_cuda_device_that_is_not_there_is_refused_with_one_line(scripts, capsys):
    with pytest.raises(SystemExit) as stopped:
        scripts[TRAIN_C].parse_args(["--dream", "--device", "cuda"])
    assert stopped.value.code == 2 and "--device cuda: torch sees no CUDA device here" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["folder", "rollout", "series", "csv"])
def test_init_from_good_data_that_is_not_a_checkpoint_is_not_called_damaged(tmp_path, scripts, kind):
    """It used to say "unreadable ...; delete it": advice to delete good data."""
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    series = write_random_series(tmp_path / "series", episodes=1, steps=10)[0]
    (tmp_path / "log.csv").write_text("epoch,loss\n1,0.5\n")
    target = {"folder": tmp_path / "rollout", "rollout": tmp_path / "rollout" / "ep00000000.npz", "series": series,
              "csv": tmp_path / "log.csv"}[kind]
    message = stage_error(scripts[TRAIN_V], ["--epochs", "1", "--batch-size", "5", "--data-dir", str(tmp_path / "rollout"),
                                             "--checkpoint-dir", str(tmp_path / "ckpt"), "--init-from", str(target)])
    assert str(target) in message and "not a checkpoint" in message and "delete" not in message
    assert target.exists()


def test_a_bad_series_file_under_branching_dreams_can_be_left_out_as_the_error_says(tmp_path, scripts, capsys):
    save_untrained_models(tmp_path / "ckpt")
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=8)
    scripts[ENCODE].main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                          "--checkpoint-dir", str(tmp_path / "ckpt")])
    (tmp_path / "series" / "ep00000001.npz").write_bytes(b"damaged")
    argv = ["--dream", "--branch-steps", "4", "--series-dir", str(tmp_path / "series"), "--generations", "1", "--population", "2",
            "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1", "--check-episodes", "1", "--workers", "1",
            "--gif-steps", "0", "--checkpoint-dir", str(tmp_path / "ckpt")]
    message = stage_error(scripts[TRAIN_C], argv)
    assert "ep00000001.npz" in message and "(or pass --skip-bad-files to leave such files out)" in message
    scripts[TRAIN_C].main(argv + ["--skip-bad-files"])
    assert "skipped 1 of 2 episode files" in capsys.readouterr().err
