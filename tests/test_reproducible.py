"""The same seeds give the same data and, on the CPU, the same training results, however
the work is split: over worker processes, or over runs that stop and resume."""

import shutil

import numpy as np
import torch
from helpers import log_rows, save_untrained_models

from worldmodels.episodes import list_episodes, read_rollout


def test_stage_01_writes_the_same_episodes_with_one_worker_or_two(tmp_path, scripts):
    for workers in ("1", "2"):
        scripts[0].main(["--episodes", "3", "--max-steps", "60", "--out-dir", str(tmp_path / workers), "--workers", workers])
    one, two = list_episodes(tmp_path / "1"), list_episodes(tmp_path / "2")
    assert [p.name for p in one] == [p.name for p in two] and len(one) == 3
    for a, b in zip(one, two):
        for key, array in read_rollout(a).items():
            np.testing.assert_array_equal(array, read_rollout(b)[key], err_msg=f"{a.name} {key}")


def test_a_search_resumed_between_generations_equals_one_run(tmp_path, scripts):
    train_controller = scripts[4]
    save_untrained_models(tmp_path / "whole")
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")  # the same V and M
    run = lambda folder, generations: train_controller.main(
        ["--generations", str(generations), "--population", "4", "--episodes-per-candidate", "2", "--max-steps", "30",
         "--check-every", "2", "--check-episodes", "2", "--workers", "1", "--checkpoint-dir", str(tmp_path / folder)])
    run("whole", 4)
    run("resumed", 2)
    run("resumed", 4)
    columns = ("generation", "best", "mean", "worst", "sigma", "check_mean")
    whole, resumed = log_rows(tmp_path / "whole" / "controller_log.csv"), log_rows(tmp_path / "resumed" / "controller_log.csv")
    assert [[r[c] for c in columns] for r in whole] == [[r[c] for c in columns] for r in resumed]
    assert len(whole) == 4 and len({r["mean"] for r in whole}) > 1  # the candidates did differ
    load = lambda folder: torch.load(tmp_path / folder / "controller.pt", weights_only=True)["params"]
    assert torch.equal(load("whole"), load("resumed"))
