"""Faults: killed workers and killed stages. Nothing hangs, nothing is lost, re-running resumes."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from worldmodels.episodes import list_episodes, read_rollout
from worldmodels.parallel import WorkerDied, WorkerPool

ROOT = Path(__file__).resolve().parent.parent


def _die_on_two(x: int) -> int:
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.2)
    return x


def test_a_killed_worker_stops_the_map_with_a_clear_error():
    started = time.monotonic()
    with WorkerPool(2) as pool, pytest.raises(WorkerDied, match="_die_on_two.*re-run to resume"):
        pool.map(_die_on_two, range(6))
    assert time.monotonic() - started < 60  # reported, not hung


def _stage(args: list[str], cwd: Path) -> subprocess.Popen:
    # a session of its own, so the kill below takes the stage and all its workers at once
    return subprocess.Popen([sys.executable, str(ROOT / args[0]), *args[1:]], cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(process: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL the stage and its workers as soon as ready() holds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before it could be killed:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def test_stage_01_killed_mid_run_completes_its_dataset_when_re_run(tmp_path):
    out = tmp_path / "rollout"
    args = ["01_generate_data.py", "--episodes", "12", "--max-steps", "150", "--out-dir", str(out), "--workers", "2"]
    _kill_when(_stage(args, tmp_path), lambda: len(list_episodes(out)) >= 2)
    kept = {p.name for p in list_episodes(out)}
    assert 2 <= len(kept) < 12
    for path in list_episodes(out):
        read_rollout(path)  # whatever a killed run left under a final name is whole
    rerun = _stage(args, tmp_path)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    assert f"{len(kept)} episodes already" in output
    assert [p.name for p in list_episodes(out)] == [f"ep{i:08d}.npz" for i in range(12)]
    for path in list_episodes(out):
        assert len(read_rollout(path)["action"]) == 150


def _log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def test_stage_05_killed_mid_search_continues_where_it_stopped(tmp_path):
    from worldmodels.checkpoints import save_model
    from worldmodels.mdrnn import MDNRNN
    from worldmodels.vae import ConvVAE

    ckpt = tmp_path / "ckpt"
    save_model(ckpt / "vae.pt", "vae", ConvVAE())  # untrained models: the search's bookkeeping is under test
    save_model(ckpt / "mdrnn.pt", "mdrnn", MDNRNN(hidden_size=32))
    log = ckpt / "controller_log.csv"
    args = ["05_train_controller.py", "--generations", "30", "--population", "4", "--episodes-per-candidate", "1",
            "--max-steps", "20", "--check-every", "5", "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)]
    _kill_when(_stage(args, tmp_path), lambda: len(_log_rows(log)) >= 3)
    rerun = _stage(args, tmp_path)
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, output
    resumed_after = int(output.split("resuming the search from")[1].split("after generation ")[1].split()[0])
    assert 3 <= resumed_after < 30
    assert [int(row["generation"]) for row in _log_rows(log)] == list(range(1, 31))  # each generation logged once
