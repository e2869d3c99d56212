"""What a stage writes is never lost silently: a full disk or an unwritable folder gives one
line, outputs that cannot be resumed are not replaced without --restart, logs agree with
the saved state after a kill at any moment, and a stopped evaluation says what it kept."""

import errno
import functools
import os
import shutil
import signal
from collections import namedtuple

import pytest
from helpers import (
    ROOT,
    log_rows,
    save_untrained_models,
    stage_error,
    start_stage,
    write_random_rollouts,
    write_random_series,
)

import worldmodels.evaluation
import worldmodels.rollout
import worldmodels.search as search
import worldmodels.training as training
from worldmodels.cli import INTERRUPTED_EXIT, run_stage

COLLECT, TRAIN_V, ENCODE, TRAIN_M, TRAIN_C = range(5)


def _v_args(tmp_path, epochs: int) -> list[str]:
    return ["--epochs", str(epochs), "--batch-size", "5", "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(tmp_path / "ckpt")]


def _search_args(ckpt, generations: int = 1) -> list[str]:
    return ["--generations", str(generations), "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "5",
            "--check-every", "1", "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)]


# --- a full disk, an unwritable folder --------------------------------------------------------

def test_a_full_disk_in_stage_01_workers_ends_with_one_line(tmp_path):
    """A worker's write fails as on a full disk (tests/full_disk/sitecustomize.py, loaded by the
    stage and its spawned workers): one line naming the folder, exit 1."""
    out = tmp_path / "rollout"
    process = start_stage(["01_generate_data.py", "--episodes", "4", "--max-steps", "30", "--out-dir", str(out), "--workers", "2"],
                          tmp_path, PYTHONPATH=str(ROOT / "tests" / "full_disk"), FULL_DISK_FILES=".ep00000002.npz.*")
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1
    assert output.strip().splitlines()[-1] == (f"error: {out}: no space left on its disk (writing ep00000002.npz); free some space "
                                               "and re-run (files already written are whole and kept)")
    assert "Traceback" not in output and not list(out.glob(".*.tmp"))


def _full_disk_for(monkeypatch, name: str) -> None:
    """In this process, writing files called ``name`` fails with ENOSPC at fsync."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if f".{name}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("stage, argv, output", [
    (COLLECT, ["--episodes", "1", "--max-steps", "5", "--workers", "1", "--out-dir", "{tmp}/out"], "ep00000000.npz"),
    (TRAIN_V, ["--epochs", "1", "--batch-size", "5", "--data-dir", "{tmp}/rollout", "--checkpoint-dir", "{tmp}/out"], "vae.pt"),
    (ENCODE, ["--rollout-dir", "{tmp}/rollout", "--series-dir", "{tmp}/out", "--checkpoint-dir", "{tmp}/ckpt"], "ep00000000.npz"),
    (ENCODE, ["--rollout-dir", "{tmp}/rollout", "--series-dir", "{tmp}/out", "--checkpoint-dir", "{tmp}/ckpt", "--skip-bad-files"],
     "ep00000000.npz"),  # a full disk is no reason to skip the file being encoded
    (TRAIN_M, ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--series-dir", "{tmp}/series", "--checkpoint-dir", "{tmp}/out"],
     "mdrnn.pt"),
    (TRAIN_C, _search_args("{tmp}/ckpt"), "controller.pt"),
    (TRAIN_C, _search_args("{tmp}/ckpt"), "cma_state.npz"),
], ids=["01", "02", "03", "03-skip-bad-files", "04", "05-controller", "05-state"])
def test_a_full_disk_ends_every_stage_with_one_line(tmp_path, scripts, monkeypatch, stage, argv, output):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    write_random_series(tmp_path / "series", episodes=2, steps=10)
    save_untrained_models(tmp_path / "ckpt")
    argv = [a.format(tmp=tmp_path) for a in argv]
    folder = tmp_path / ("ckpt" if stage == TRAIN_C else "out")
    _full_disk_for(monkeypatch, output)
    message = stage_error(scripts[stage], argv)
    assert message == f"error: {folder}: no space left on its disk (writing {output}); free some space and re-run " \
                      "(files already written are whole and kept)"
    assert not list(folder.glob(".*.tmp"))


def test_a_full_disk_at_the_end_of_an_epoch_keeps_the_last_checkpoint(tmp_path, scripts, monkeypatch):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    scripts[TRAIN_V].main(_v_args(tmp_path, 1))
    good = (tmp_path / "ckpt" / "vae.pt").read_bytes()
    _full_disk_for(monkeypatch, "vae.pt")
    message = stage_error(scripts[TRAIN_V], _v_args(tmp_path, 2))
    assert message == f"error: {tmp_path / 'ckpt'}: no space left on its disk (writing vae.pt); free some space and re-run " \
                      "(files already written are whole and kept)"
    assert (tmp_path / "ckpt" / "vae.pt").read_bytes() == good
    assert not list((tmp_path / "ckpt").glob(".*.tmp"))
    monkeypatch.undo()
    scripts[TRAIN_V].main(_v_args(tmp_path, 2))  # space freed: the re-run resumes after epoch 1
    assert [row["epoch"] for row in log_rows(tmp_path / "ckpt" / "vae_log.csv")] == ["1", "2"]


def test_a_disk_without_room_for_the_checkpoint_stops_before_training(tmp_path, scripts, monkeypatch):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))  # 1 MB free
    message = stage_error(scripts[TRAIN_V], _v_args(tmp_path, 1))
    assert f"{tmp_path / 'ckpt'}: 1.0 MB free on its disk, but the next write needs about" in message
    assert not (tmp_path / "ckpt" / "vae.pt").exists()


def test_stage_02_does_not_train_an_epoch_it_could_not_save(tmp_path, scripts, monkeypatch):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    usage = namedtuple("usage", "total used free")
    checkpoint = tmp_path / "ckpt" / "vae.pt"
    # the first epoch's checkpoint fills the disk
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**10, 0, 10**6 if checkpoint.exists() else 10**10))
    epochs_started = []
    real_batches = scripts[TRAIN_V].stream_frame_batches
    monkeypatch.setattr(scripts[TRAIN_V], "stream_frame_batches", lambda *a, **k: epochs_started.append(1) or real_batches(*a, **k))
    message = stage_error(scripts[TRAIN_V], _v_args(tmp_path, 2))
    assert f"{tmp_path / 'ckpt'}: 1.0 MB free on its disk, but the next write needs about" in message
    assert len(epochs_started) == 1
    assert [row["epoch"] for row in log_rows(tmp_path / "ckpt" / "vae_log.csv")] == ["1"]


def test_an_unwritable_output_folder_is_named_before_work_starts(tmp_path, scripts, monkeypatch):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    save_untrained_models(tmp_path / "ckpt")

    def refuse(*args, **kwargs):  # root may write anywhere, so the refusal is simulated
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    message = stage_error(scripts[ENCODE], ["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                                            "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert message == f"error: {tmp_path / 'series'}: cannot write .write-check there (Permission denied); make it a writable " \
                      "folder or choose another, then re-run"


# --- nothing good is replaced silently --------------------------------------------------------

def test_a_controller_without_its_search_state_is_not_replaced(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    scripts[TRAIN_C].main(_search_args(ckpt))
    trained = (ckpt / "controller.pt").read_bytes()
    (ckpt / "cma_state.npz").unlink()
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt, 2))
    assert f"{ckpt}: holds controller.pt, controller_log.csv from an earlier run but no cma_state.npz to resume it from; " \
           "pass --restart to replace them, or choose another folder" in message
    assert (ckpt / "controller.pt").read_bytes() == trained
    scripts[TRAIN_C].main(_search_args(ckpt, 2) + ["--restart"])
    assert len(log_rows(ckpt / "controller_log.csv")) == 2


def test_a_search_state_without_its_controller_is_named(tmp_path, scripts):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    scripts[TRAIN_C].main(_search_args(ckpt))
    (ckpt / "controller.pt").unlink()
    message = stage_error(scripts[TRAIN_C], _search_args(ckpt, 2))
    assert "controller.pt: missing, though" in message and "kept one at generation 1; put it back, or pass --restart" in message


@pytest.mark.parametrize("stage", [TRAIN_V, TRAIN_M], ids=["02", "04"])
def test_a_training_log_without_its_checkpoint_is_not_replaced(tmp_path, scripts, stage):
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    write_random_series(tmp_path / "series", episodes=2, steps=10)
    argv = (_v_args(tmp_path, 1) if stage == TRAIN_V else
            ["--epochs", "1", "--batch-size", "2", "--seq-len", "5", "--series-dir", str(tmp_path / "series"), "--checkpoint-dir",
             str(tmp_path / "ckpt")])
    scripts[stage].main(argv)
    model, log = ("vae.pt", "vae_log.csv") if stage == TRAIN_V else ("mdrnn.pt", "mdrnn_log.csv")
    (tmp_path / "ckpt" / model).unlink()
    assert f"holds {log} from an earlier run but no {model} to resume it from; pass --restart" in stage_error(scripts[stage], argv)
    scripts[stage].main(argv + ["--restart"])
    assert len(log_rows(tmp_path / "ckpt" / log)) == 1


# --- logs agree with the state after a kill at any moment ---------------------------------------

class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


def _kill_at_call(monkeypatch, script, name: str, call: int) -> None:
    """The script's ``name`` function dies on its ``call``-th call (counting from 1)."""
    real, calls = getattr(script, name), []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise Killed
        return real(*args, **kwargs)
    monkeypatch.setattr(script, name, dying)


@pytest.mark.parametrize("stage", [TRAIN_M, TRAIN_C], ids=["04", "05"])
def test_a_kill_between_the_state_and_its_log_loses_no_row(tmp_path, scripts, monkeypatch, stage):
    save_untrained_models(tmp_path / "ckpt", hidden_size=16)
    write_random_series(tmp_path / "series", episodes=3, steps=20)
    if stage == TRAIN_M:
        argv = ["--epochs", "4", "--batch-size", "2", "--seq-len", "5", "--hidden-size", "16", "--series-dir", str(tmp_path / "series"),
                "--checkpoint-dir", str(tmp_path / "ckpt"), "--restart"]
        log, key = tmp_path / "ckpt" / "mdrnn_log.csv", "epoch"
    else:
        argv, log, key = _search_args(tmp_path / "ckpt", 4), tmp_path / "ckpt" / "controller_log.csv", "generation"
    # write_csv is called once as the run starts, then after each epoch's or generation's save:
    # the 3rd call comes right after the state of the 2nd was saved
    _kill_at_call(monkeypatch, training if stage == TRAIN_M else search, "write_csv", 3)  # the loops of 04 and 05 are in the package
    with pytest.raises(Killed):
        scripts[stage].main(argv)
    assert [row[key] for row in log_rows(log)] == ["1"]  # the row of the 2nd is not in the file yet
    monkeypatch.undo()
    scripts[stage].main([a for a in argv if a != "--restart"])
    assert [row[key] for row in log_rows(log)] == ["1", "2", "3", "4"]


# --- a stopped evaluation says what it kept -------------------------------------------------

def _stop_during(monkeypatch, target, name: str) -> None:
    """``target.name`` sends this process a Ctrl-C (SIGINT), then does its work."""
    real = getattr(target, name)

    @functools.wraps(real)
    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)
    monkeypatch.setattr(target, name, interrupted)


def _stopped(capsys, script, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: script.main(argv))
    assert stopped.value.code == INTERRUPTED_EXIT
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_ctrl_c_during_an_evaluation_says_that_nothing_was_written(tmp_path, scripts, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    scripts[TRAIN_C].main(_search_args(ckpt))
    _stop_during(monkeypatch, worldmodels.rollout, "run_agent_job")
    line = _stopped(capsys, scripts[TRAIN_C], ["--evaluate", "4", "--max-steps", "5", "--workers", "1", "--checkpoint-dir", str(ckpt)])
    assert line == ("stopped: the evaluation was stopped unfinished (1 of 2 runs of run_agent_job had finished); nothing was "
                    "written: re-run to evaluate")
    assert not (ckpt / "evaluation.csv").exists()


def test_ctrl_c_while_the_gifs_are_written_stops_after_the_gif_in_hand(tmp_path, scripts, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    scripts[TRAIN_C].main(_search_args(ckpt))
    _stop_during(monkeypatch, worldmodels.evaluation, "record_real")
    line = _stopped(capsys, scripts[TRAIN_C], ["--evaluate", "3", "--max-steps", "5", "--workers", "1", "--checkpoint-dir", str(ckpt)])
    assert line == (f"stopped: {ckpt / 'evaluation.csv'} is written, but the GIFs were stopped before drive_median.gif; "
                    "re-run --evaluate to make them")
    assert len(log_rows(ckpt / "evaluation.csv")) == 3
    assert (ckpt / "drive_best.gif").exists() and not (ckpt / "drive_median.gif").exists()


def test_a_stop_that_comes_after_the_last_safe_point_still_ends_the_stage_as_stopped(capsys):
    """A profile that runs the stages one after another must stop too, even when the stage
    in hand had already done its work."""
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: os.kill(os.getpid(), signal.SIGINT))
    assert stopped.value.code == INTERRUPTED_EXIT
    assert "stopped: the stage finished and saved its work before the stop could take effect" in capsys.readouterr().err


def test_a_stop_in_the_first_generation_says_nothing_was_saved_and_the_re_run_starts(tmp_path, scripts, monkeypatch, capsys):
    """It used to name a cma_state.npz that did not exist, and the re-run refused the folder
    for a log holding only its header."""
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    with monkeypatch.context() as patch:
        _stop_during(patch, worldmodels.rollout, "run_agent_job")
        line = _stopped(capsys, scripts[TRAIN_C], _search_args(ckpt, 2) + ["--population", "4"])
    assert line == "stopped: no generation had finished, so nothing was saved; re-run to start the search"
    assert not (ckpt / "cma_state.npz").exists()
    scripts[TRAIN_C].main(_search_args(ckpt, 2))  # no --restart needed: a log with no rows is not a run to protect
    assert len(log_rows(ckpt / "controller_log.csv")) == 2


def test_a_training_log_with_no_rows_does_not_block_the_re_run(tmp_path, scripts):
    """A SIGKILL in epoch 1 of 02 leaves the log's header and no checkpoint."""
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=10)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "vae_log.csv").write_text("epoch,train_loss\n")
    scripts[TRAIN_V].main(_v_args(tmp_path, 1))
    assert [row["epoch"] for row in log_rows(tmp_path / "ckpt" / "vae_log.csv")] == ["1"]

