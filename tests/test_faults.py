"""Faults: killed workers, killed stages, Ctrl-C. Nothing hangs, nothing is lost, re-running resumes."""

import importlib.util
import os
import signal
import time

import pytest
import torch
from helpers import (
    log_rows,
    run_stage_process,
    save_untrained_models,
    signal_when,
    start_stage,
    write_random_rollouts,
    write_random_series,
)

from worldmodels.cli import INTERRUPTED_EXIT
from worldmodels.episodes import list_episodes, read_rollout


def _collect_args(out) -> list[str]:
    return ["01_generate_data.py", "--episodes", "12", "--max-steps", "150", "--out-dir", str(out), "--workers", "2"]


def _assert_dataset_completes(out, tmp_path, kept: set[str]) -> None:
    for path in list_episodes(out):
        read_rollout(path)  # whatever a stopped run left under a final name is whole
    output = run_stage_process(_collect_args(out), tmp_path)
    assert f"{len(kept)} of these 12 episodes already" in output
    assert [p.name for p in list_episodes(out)] == [f"ep{i:08d}.npz" for i in range(12)]
    for path in list_episodes(out):
        assert len(read_rollout(path)["action"]) == 150


def test_stage_01_killed_mid_run_completes_its_dataset_when_re_run(tmp_path):
    out = tmp_path / "rollout"
    signal_when(start_stage(_collect_args(out), tmp_path), lambda: len(list_episodes(out)) >= 2, signal.SIGKILL)
    kept = {p.name for p in list_episodes(out)}
    assert 2 <= len(kept) < 12
    _assert_dataset_completes(out, tmp_path, kept)


def test_ctrl_c_in_stage_01_writes_the_episodes_in_progress_and_stops(tmp_path):
    out = tmp_path / "rollout"
    process = start_stage(_collect_args(out), tmp_path)
    output = signal_when(process, lambda: len(list_episodes(out)) >= 2, signal.SIGINT)
    assert process.returncode == INTERRUPTED_EXIT, output
    kept = {p.name for p in list_episodes(out)}
    assert f"stopped: {len(kept)} of 12 episodes are in {out}; re-run to collect the rest" in output
    assert "Traceback" not in output
    assert not list(out.glob(".*.tmp"))  # the two workers finished their episodes: nothing half-written
    _assert_dataset_completes(out, tmp_path, kept)


def _search_args(ckpt) -> list[str]:
    return ["05_train_controller.py", "--generations", "30", "--population", "4", "--episodes-per-candidate", "1",
            "--max-steps", "20", "--check-every", "5", "--check-episodes", "1", "--workers", "2", "--checkpoint-dir", str(ckpt)]


_ON_RAY = dict(marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed"))


@pytest.mark.parametrize("stop, group, flags", [
    (signal.SIGKILL, True, []), (signal.SIGINT, True, []), (signal.SIGTERM, True, []), (signal.SIGTERM, False, []),
    pytest.param(signal.SIGINT, True, ["--ray", "local"], **_ON_RAY), pytest.param(signal.SIGTERM, False, ["--ray", "local"], **_ON_RAY),
], ids=["killed", "ctrl-c", "sigterm", "sigterm-to-the-stage-alone", "ctrl-c-on-ray", "sigterm-to-the-stage-alone-on-ray"])
def test_stage_05_stopped_mid_search_continues_where_it_stopped(tmp_path, stop, group, flags):
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)  # the search's bookkeeping is under test, not its driving
    log = ckpt / "controller_log.csv"
    process = start_stage(_search_args(ckpt) + flags, tmp_path, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    output = signal_when(process, lambda: len(log_rows(log)) >= 3, stop, group=group)
    if stop != signal.SIGKILL:
        assert process.returncode == 128 + stop and "Traceback" not in output, output
        saved = len(log_rows(log))
        assert f"stopped: {ckpt / 'cma_state.npz'} holds the search after generation {saved}; re-run" in output
    output = run_stage_process(_search_args(ckpt), tmp_path)
    resumed_after = int(output.split("resuming the search from")[1].split("after generation ")[1].split()[0])
    assert 3 <= resumed_after < 30
    assert [int(row["generation"]) for row in log_rows(log)] == list(range(1, 31))  # each generation logged once


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _assert_same_weights(a, b) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_mid_epoch_saves_v_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path, scripts, stop):
    write_random_rollouts(tmp_path / "rollout", episodes=4, steps=100)
    args = lambda ckpt: ["02_train_vae.py", "--epochs", "3", "--batch-size", "20", "--buffer-episodes", "2",
                         "--data-dir", str(tmp_path / "rollout"), "--checkpoint-dir", str(ckpt)]
    scripts[1].main(args(tmp_path / "whole")[1:])  # uninterrupted, in this process
    process = start_stage(args(tmp_path / "stopped"), tmp_path)
    output = signal_when(process, lambda: len(log_rows(tmp_path / "stopped" / "vae_log.csv")) >= 1, stop)
    assert process.returncode == 128 + stop and "Traceback" not in output, output
    assert "saved after batch" in output
    output = run_stage_process(args(tmp_path / "stopped"), tmp_path)
    assert "resuming from" in output
    _assert_same_weights(_weights(tmp_path / "whole" / "vae.pt"), _weights(tmp_path / "stopped" / "vae.pt"))
    assert len(log_rows(tmp_path / "stopped" / "vae_log.csv")) == 3


def test_ctrl_c_mid_epoch_saves_m_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path, scripts):
    write_random_series(tmp_path / "series", episodes=6, steps=200, z_size=8)
    args = lambda ckpt: ["04_train_rnn.py", "--epochs", "40", "--batch-size", "4", "--seq-len", "20", "--hidden-size", "16",
                         "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(ckpt)]
    scripts[3].main(args(tmp_path / "whole")[1:])
    process = start_stage(args(tmp_path / "stopped"), tmp_path)
    output = signal_when(process, lambda: len(log_rows(tmp_path / "stopped" / "mdrnn_log.csv")) >= 1, signal.SIGINT)
    assert process.returncode == INTERRUPTED_EXIT and "Traceback" not in output, output
    assert "saved after batch" in output
    run_stage_process(args(tmp_path / "stopped"), tmp_path)
    _assert_same_weights(_weights(tmp_path / "whole" / "mdrnn.pt"), _weights(tmp_path / "stopped" / "mdrnn.pt"))
    assert [int(r["epoch"]) for r in log_rows(tmp_path / "stopped" / "mdrnn_log.csv")] == list(range(1, 41))


def test_a_folder_has_one_writer_at_a_time_and_a_killed_one_leaves_no_lock(tmp_path):
    """Two runs in one folder (one resuming, one with --restart) used to both exit 0, one of
    them reporting a controller that the other had overwritten."""
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    log = ckpt / "controller_log.csv"
    first = start_stage(_search_args(ckpt) + ["--generations", "300"], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(log_rows(log)) < 1:
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
            time.sleep(0.05)
        second = start_stage(_search_args(ckpt) + ["--restart"], tmp_path)
        output = second.communicate(timeout=120)[0]
        assert second.returncode == 1, output
        assert output.strip().splitlines()[-1] == (f"error: {ckpt}: in use by process {first.pid}, which is writing there; wait "
                                                    "for it to end (or stop it), or choose another folder")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    output = run_stage_process(_search_args(ckpt), tmp_path)  # the killed run's lock went with it
    assert "resuming the search" in output
