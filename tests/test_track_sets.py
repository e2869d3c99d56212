"""Choose on validation tracks, report on test tracks: the seed ranges are disjoint, the search
checks on validation tracks, --evaluate says which set it scored, and the GIFs it writes show
the very drives it scored."""

import importlib.util

import numpy as np
import pytest
from helpers import ROOT, log_rows, save_untrained_agent, save_untrained_models

import worldmodels.evaluation as evaluation
from worldmodels import env
from worldmodels.checkpoints import load_vae_and_mdrnn
from worldmodels.controller import parameter_count
from worldmodels.errors import DataError
from worldmodels.rollout import run_agent_episodes
from worldmodels.viewer import record_real

TRAIN_C = 4


def test_the_track_sets_are_disjoint_and_named():
    starts = [env.DATA_SEED_BASE, env.TRAIN_SEED_BASE, env.VALIDATION_SEED_BASE, env.RETIRED_SEED_BASE, env.TEST_SEED_BASE,
              env.SEED_RANGE_END]
    assert starts == sorted(set(starts))
    assert env.track_set([env.VALIDATION_SEED_BASE, env.VALIDATION_SEED_BASE + 99]) == "validation"
    assert env.track_set([env.TEST_SEED_BASE + i for i in range(env.TEST_TRACKS)]) == "test"
    assert env.track_set([30_000_000]) == "retired"  # the old evaluation tracks chose the agents reported on them
    assert env.track_set([env.VALIDATION_SEED_BASE, env.TEST_SEED_BASE]) == "mixed"
    assert env.track_set([5]) == "data" and env.track_set([env.TRAIN_SEED_BASE + 7]) == "training"
    assert "past the 100 of the test set" in env.describe_tracks([env.TEST_SEED_BASE + 100])


@pytest.mark.parametrize("flags, first, name", [([], env.TEST_SEED_BASE, "test"),
                                                (["--tracks", "validation"], env.VALIDATION_SEED_BASE, "validation")],
                         ids=["test", "validation"])
def test_evaluate_says_which_set_it_scored(tmp_path, scripts, capsys, flags, first, name):
    save_untrained_agent(tmp_path)
    scripts[TRAIN_C].main(["--evaluate", "2", "--max-steps", "5", "--workers", "1", "--gif-steps", "0", "--checkpoint-dir",
                           str(tmp_path), *flags])
    out = capsys.readouterr().out
    assert f"on 2 {name} tracks (seeds {first}..{first + 1})" in out
    assert ("choose between agents or settings with --tracks validation" in out) == (name == "test")
    rows = log_rows(tmp_path / "evaluation.csv")
    assert [row["track_set"] for row in rows] == [name, name] and [int(r["track_seed"]) for r in rows] == [first, first + 1]


def test_a_replay_of_a_scored_episode_drives_it_again_to_the_same_return(tmp_path):
    """The GIFs used to re-drive with float32 at batch 1 while the score came from bfloat16 in
    a batch: a chaotic episode then showed another drive than the one scored."""
    save_untrained_models(tmp_path)
    vae, mdrnn = load_vae_and_mdrnn(tmp_path / "vae.pt", tmp_path / "mdrnn.pt")
    params = np.random.default_rng(3).normal(0, 0.3, (3, parameter_count(64))).astype(np.float32)
    params[:, -2] += 1.0  # gas: the cars move, so the drives differ
    scored = run_agent_episodes(vae, mdrnn, params, [11, 12, 13], max_steps=120, fast_render=True, fast_acting=True,
                                record_actions=True)
    for i, seed in enumerate([11, 12, 13]):
        assert scored.actions[i].shape == (scored.steps[i], 3)
        replay = record_real(vae, mdrnn, params[i], seed, 40, fast_render=True, actions=scored.actions[i], fast_acting=True)
        assert replay.total_return == pytest.approx(scored.returns[i], abs=1e-9)
        assert len(replay.rewards) == 40 and np.array_equal(replay.actions, scored.actions[i][:40])


def test_the_drive_gifs_are_captioned_with_the_scored_returns(tmp_path, scripts, monkeypatch):
    save_untrained_agent(tmp_path)
    titles = []
    monkeypatch.setattr(evaluation, "write_drive", lambda path, recording, title: titles.append(title))
    scripts[TRAIN_C].main(["--evaluate", "3", "--max-steps", "60", "--workers", "1", "--gif-steps", "10", "--checkpoint-dir",
                           str(tmp_path)])
    returns = {int(row["track_seed"]): float(row["return"]) for row in log_rows(tmp_path / "evaluation.csv")}
    ranked = sorted(returns, key=returns.get)
    for title, seed in zip(titles, [ranked[-1], ranked[1], ranked[0]]):
        assert title.endswith(f"track {seed}, return {returns[seed]:.1f}"), title


def test_paired_with_compares_track_by_track_with_another_agents_evaluation(tmp_path, scripts, capsys):
    save_untrained_agent(tmp_path)
    evaluate = ["--evaluate", "3", "--max-steps", "5", "--workers", "1", "--gif-steps", "0", "--checkpoint-dir", str(tmp_path)]
    scripts[TRAIN_C].main(evaluate)
    rows = log_rows(tmp_path / "evaluation.csv")
    other = tmp_path / "other.csv"  # the same tracks, another agent: 10, 20 and 30 points lower, one lap more
    other.write_text("episode,track_set,track_seed,return,steps,lap_finished\n" + "".join(
        f"{i},test,{row['track_seed']},{float(row['return']) - 10 * (i + 1)},5,{int(i == 0)}\n" for i, row in enumerate(rows)))
    capsys.readouterr()
    scripts[TRAIN_C].main([*evaluate, "--paired-with", str(other)])
    out = capsys.readouterr().out
    assert (f"paired with {other} on the same 3 tracks, this minus that: +20.0 ± 5.8 (standard error); better on 3, worse on 0; "
            "laps 0 against 1") in out
    scripts[TRAIN_C].main([*evaluate, "--paired-with", str(tmp_path / "evaluation.csv")])  # the same agent, its own file
    assert "this minus that: +0.0 ± 0.0 (standard error); better on 0, worse on 0, level on 3" in capsys.readouterr().out


@pytest.mark.parametrize("text, problem", [(None, "cannot be read"), ("episode,return\n0,1.0\n", "not an evaluation.csv"),
                                           ("track_seed,return\n60000000,1.0\n", "has no row for 1 of these 2 tracks")],
                         ids=["missing", "not-an-evaluation", "other-tracks"])
def test_paired_with_refuses_a_file_it_cannot_pair_before_driving(tmp_path, scripts, monkeypatch, text, problem):
    save_untrained_agent(tmp_path)
    other = tmp_path / "other.csv"
    if text is not None:
        other.write_text(text)
    monkeypatch.setattr(evaluation.Worlds, "real", lambda *a, **k: pytest.fail("drove before checking the file"))
    with pytest.raises(DataError) as refused:
        scripts[TRAIN_C].main(["--evaluate", "2", "--max-steps", "5", "--workers", "1", "--checkpoint-dir", str(tmp_path),
                               "--paired-with", str(other)])
    assert str(refused.value).startswith(f"{other}: ") and problem in str(refused.value), refused.value


def _paired_script():
    spec = importlib.util.spec_from_file_location("paired", ROOT / "benchmarks" / "paired.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_saved_evaluations_are_compared_track_by_track_on_the_tracks_both_hold(tmp_path, capsys):
    header = "episode,track_set,track_seed,return,steps,lap_finished\n"
    this, that = tmp_path / "this.csv", tmp_path / "that.csv"
    this.write_text(header + "".join(f"{i},validation,{20000000 + i},{r},5,{lap}\n" for i, (r, lap) in enumerate([(110, 1), (50, 0), (30, 0)])))
    that.write_text(header + "".join(f"{i},validation,{20000000 + i},{r},5,0\n" for i, r in enumerate([100, 30, 0, 999])))
    _paired_script().main([str(this), str(that)])
    assert capsys.readouterr().out.strip() == (
        f"{this} on 3 validation tracks (seeds 20000000..20000002): paired with {that} on the same 3 tracks, this minus that: "
        "+20.0 ± 5.8 (standard error); better on 3, worse on 0; laps 1 against 0")
    that.write_text(header + "0,test,60000000,1.0,5,0\n")
    with pytest.raises(DataError, match="no track in common"):
        _paired_script().main([str(this), str(that)])
