"""A resumed search is the search it continues: a change of what it ranks or checks by is
refused, one extended past its end keeps what one uninterrupted run keeps, and a controller
records every search that made it."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from helpers import log_rows, models_and_series, save_untrained_models, stage_error

from worldmodels.checkpoints import (CONTROLLER_FILE, controller_config, describe_training, load_checkpoint, load_vae_and_mdrnn,
                                     training_history)
from worldmodels.env import VALIDATION_SEED_BASE
from worldmodels.errors import DataError
from worldmodels.evaluation import evaluate_saved
from worldmodels.evolution import STATE_FILE, new_search
from worldmodels.results import EpisodeResults
from worldmodels.rollout import PLAIN_EPISODES, TrainingEpisodes
from worldmodels.search import ControllerSearch, SearchSettings

ENCODE, TRAIN_C = 2, 4


@dataclass
class ScriptedWorlds:
    """Real tracks (and dreams) whose training returns depend on the parameters alone (so CMA-ES
    runs the same way every time) and whose check of the CMA mean at generation g scores
    check_scores[g] (in dreams: dream_check_scores[g])."""
    check_scores: dict[int, float]
    dream_check_scores: dict[int, float] = field(default_factory=dict)
    search: ControllerSearch | None = None
    checked_seeds: list[list[int]] = field(default_factory=list)
    max_steps: int = 5
    fast_render: bool = True
    fast_acting: bool = True
    bfloat16: bool = False
    temperature: float = 1.0
    members: list = field(default_factory=list)
    z_charge: None = None
    dream_dropout: bool = False
    start_states: None = None
    device: str = "cpu"
    starts: None = None
    training_by_call: list[tuple[str, TrainingEpisodes]] = field(default_factory=list)

    def real(self, params, seeds, training=PLAIN_EPISODES, desc=None, record_actions=False):
        self.training_by_call.append((desc, training))
        if desc == "checking the CMA mean":
            self.checked_seeds.append(list(seeds))
            returns = np.full(len(seeds), self.check_scores[self.search.state.generation])
        else:
            returns = -((params - 0.3) ** 2).sum(axis=1)
        return EpisodeResults(returns, np.ones(len(seeds), dtype=np.int64), np.zeros(len(seeds)), np.zeros(len(seeds)),
                              laps=np.zeros(len(seeds), dtype=bool),
                              steps_since_last_tile=np.zeros(len(seeds), dtype=np.int64))

    def dream(self, params, seeds):
        if list(seeds) == self.search.check_seeds:
            returns = np.full(len(seeds), self.dream_check_scores[self.search.state.generation])
        else:
            returns = -((params - 0.3) ** 2).sum(axis=1)
        return EpisodeResults(returns, np.ones(len(seeds), dtype=np.int64), np.zeros(len(seeds)), np.zeros(len(seeds)),
                              laps=np.zeros(len(seeds), dtype=bool), steps_since_last_tile=np.zeros(len(seeds), dtype=np.int64))

    def describe(self):
        return "scripted tracks"

    def describe_renderer(self):
        return "no renderer"


def _run(folder, generations: int, check_scores: dict[int, float], patience: int = 0, detours: float = 0.0,
         dream_check_scores: dict[int, float] | None = None, keep_by: str = "") -> tuple[ControllerSearch, ScriptedWorlds]:
    vae, mdrnn = load_vae_and_mdrnn(folder / "vae.pt", folder / "mdrnn.pt")
    settings = SearchSettings(generations=generations, population=4, episodes_per_candidate=1, sigma0=0.1, check_every=2,
                              check_episodes=3, patience=patience, seed=0, dream=dream_check_scores is not None, curiosity=0.0,
                              init_from="", restart=False, detours=detours, keep_by=keep_by)
    worlds = ScriptedWorlds(check_scores, dream_check_scores or {})
    search = ControllerSearch(settings, worlds, folder, controller_config(vae, mdrnn, "zh"))
    worlds.search = search
    search.run()
    return search, worlds


def test_a_search_extended_past_its_end_keeps_what_one_uninterrupted_run_keeps(tmp_path):
    """Checks come every 2 generations and at the last: a run to 3 checks at 2 and 3, one to 4
    at 2 and 4. Extended from 3 to 4, the check at 3 (the best) must not be what is kept."""
    scores = {2: 10.0, 3: 50.0, 4: 20.0}
    for name in ("extended", "uninterrupted"):
        save_untrained_models(tmp_path / name)
    _run(tmp_path / "extended", 3, scores)
    assert load_checkpoint(tmp_path / "extended" / CONTROLLER_FILE, "controller", "")["generation"] == 3
    extended, _ = _run(tmp_path / "extended", 4, scores)
    uninterrupted, worlds = _run(tmp_path / "uninterrupted", 4, scores)
    kept = [load_checkpoint(tmp_path / name / CONTROLLER_FILE, "controller", "") for name in ("extended", "uninterrupted")]
    assert kept[0]["generation"] == kept[1]["generation"] == 4 and kept[0]["check_score"] == kept[1]["check_score"] == 20.0
    assert torch.equal(kept[0]["params"], kept[1]["params"])
    assert extended.state.best_generation == uninterrupted.state.best_generation == 4
    assert worlds.checked_seeds == [[VALIDATION_SEED_BASE + i for i in range(3)]] * 2  # the validation tracks


def test_an_extension_whose_end_check_was_better_falls_back_to_the_best_counted_check(tmp_path, capsys):
    save_untrained_models(tmp_path)
    _run(tmp_path, 3, {2: 10.0, 3: 50.0, 4: 5.0})
    _run(tmp_path, 4, {2: 10.0, 3: 50.0, 4: 5.0})
    assert "one run to generation 4 makes no check there: keeping generation 2's (10.0)" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / CONTROLLER_FILE, "controller", "")["generation"] == 2


def test_a_dream_search_kept_by_its_real_checks_keeps_the_best_real_check_and_a_finished_one_keeps_again_at_no_step(tmp_path):
    real, dreamed = {2: 10.0, 4: 50.0, 6: 20.0}, {2: 100.0, 4: 20.0, 6: 300.0}  # the dream is fooled where reality is not
    save_untrained_models(tmp_path)
    _run(tmp_path, 6, real, dream_check_scores=dreamed)
    by_dream = load_checkpoint(tmp_path / CONTROLLER_FILE, "controller", "")
    assert (by_dream["generation"], by_dream["check_score"]) == (6, 300.0)
    search, worlds = _run(tmp_path, 6, real, dream_check_scores=dreamed, keep_by="real")  # the finished search, resumed
    by_real = load_checkpoint(tmp_path / CONTROLLER_FILE, "controller", "")
    assert (by_real["generation"], by_real["check_score"]) == (4, 50.0) and worlds.checked_seeds == []  # no new check
    assert not torch.equal(by_real["params"], by_dream["params"])
    assert torch.equal(by_real["params"], torch.as_tensor(search.state.check_means[1], dtype=torch.float32))
    assert by_real["trained_in"] == "dream" and training_history(by_real)[-1]["kept_by"] == "real checks"
    assert describe_training(by_real) == "generation 4 of a search in the dream, kept by its checks on the validation tracks"
    save_untrained_models(tmp_path / "fresh")
    fresh, _ = _run(tmp_path / "fresh", 6, real, dream_check_scores=dreamed, keep_by="real")
    assert fresh.state.best_generation == 4  # kept by real checks from the start: the same generation


def test_keeping_by_real_checks_a_search_saved_before_they_were_recorded_is_refused_in_one_line(tmp_path):
    save_untrained_models(tmp_path)
    _run(tmp_path, 2, {2: 1.0}, dream_check_scores={2: 5.0})
    state = tmp_path / STATE_FILE
    with np.load(state) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["checks"] = [{"generation": c["generation"], "score": c["score"]} for c in meta["checks"]]  # as an older version saved them
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(state, **arrays)
    _run(tmp_path, 2, {2: 1.0}, dream_check_scores={2: 5.0})  # kept by the dream, as before: fine
    with pytest.raises(DataError, match="saved before its checks' real scores were recorded.*pass --restart"):
        _run(tmp_path, 2, {2: 1.0}, dream_check_scores={2: 5.0}, keep_by="real")


def _search(ckpt, *extra: str) -> list[str]:
    return ["--generations", "1", "--population", "2", "--episodes-per-candidate", "1", "--max-steps", "5", "--check-every", "1",
            "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt), *extra]


@pytest.mark.parametrize("changed, named", [
    (["--episodes-per-candidate", "2"], "--episodes-per-candidate 1 then, 2 now"),
    (["--check-episodes", "2"], "--check-episodes 1 then, 2 now"),
    (["--check-every", "2"], "--check-every 1 then, 2 now"),
    (["--patience", "3"], "--patience 0 then, 3 now"),
    (["--detours", "0.1"], "--detours"),
    (["--max-steps", "6"], "--max-steps 5 then, 6 now"),
    (["--no-fast-render"], "--fast-render True then, False now"),
    (["--no-fast-acting"], "--fast-acting True then, False now"),
], ids=lambda value: value[0] if isinstance(value, list) else None)
def test_a_resume_that_would_change_the_objective_or_the_check_tracks_is_refused(tmp_path, scripts, changed, named):
    save_untrained_models(tmp_path)
    scripts[TRAIN_C].main(_search(tmp_path))
    message = stage_error(scripts[TRAIN_C], _search(tmp_path, "--generations", "2", *changed))
    assert named in message and "resume it with its settings, or pass --restart" in message


def test_a_controller_records_every_search_that_made_it(tmp_path, scripts):
    """A real-env search from a dream-trained controller used to relabel it "real" only."""
    ckpt = models_and_series(tmp_path, scripts[ENCODE])
    (ckpt / "dream").mkdir()
    for name in ("vae.pt", "mdrnn.pt"):
        (ckpt / "dream" / name).write_bytes((ckpt / name).read_bytes())
    scripts[TRAIN_C].main(_search(ckpt / "dream", "--dream", "--series-dir", str(tmp_path / "series"), "--gif-steps", "0"))
    dreamed = ckpt / "dream" / CONTROLLER_FILE
    assert training_history(load_checkpoint(dreamed, "controller", "")) == [{"world": "dream", "generation": 1, "from": "zero"}]
    scripts[TRAIN_C].main(_search(ckpt, "--init-from", str(dreamed), "--generations", "2"))
    kept = load_checkpoint(ckpt / CONTROLLER_FILE, "controller", "")
    history = training_history(kept)
    assert len(history) == 2 and history[0] == {"world": "dream", "generation": 1, "from": "zero"}
    assert history[1]["world"] == "real" and history[1]["from"].startswith(f"{dreamed} (controller ")
    assert describe_training(kept).startswith("generation 1 of a search in the dream, then generation ")


def test_a_population_too_small_for_cmas_step_size_rule_is_refused_in_one_line():
    with pytest.raises(DataError, match="use --population 3 or more"):
        new_search(867, 0.1, 2, seed=0, config={})
    state = new_search(867, 0.1, 3, seed=0, config={})
    for generation in range(3):  # three candidates are enough for it
        candidates = np.asarray(state.es.ask())
        state.tell(candidates, np.arange(3.0))
    assert state.generation == 3


def test_the_early_end_and_detours_of_training_episodes_never_apply_to_checks_or_evaluations(tmp_path):
    save_untrained_models(tmp_path)
    search, worlds = _run(tmp_path, 4, {2: 1.0, 4: 2.0}, patience=7, detours=0.01)
    training = TrainingEpisodes(patience=7, detours=0.01)
    assert dict(worlds.training_by_call) == {"generation 1": training, "generation 2": training, "generation 3": training,
                                             "generation 4": training, "checking the CMA mean": PLAIN_EPISODES}
    worlds.training_by_call.clear()
    evaluate_saved(worlds, tmp_path, str(tmp_path / CONTROLLER_FILE), search.config, 3, VALIDATION_SEED_BASE, gif_steps=0)
    assert worlds.training_by_call == [("evaluation episodes", PLAIN_EPISODES)]


def test_a_search_saved_before_dream_steps_were_logged_resumes_with_them_unknown(tmp_path, scripts):
    save_untrained_models(tmp_path)
    scripts[TRAIN_C].main(_search(tmp_path))
    state = tmp_path / STATE_FILE
    with np.load(state) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["log"] = [{k: v for k, v in row.items() if k != "dream_steps"} for row in meta["log"]]  # as an older version saved it
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(state, **arrays)
    scripts[TRAIN_C].main(_search(tmp_path, "--generations", "2"))
    rows = log_rows(tmp_path / "controller_log.csv")
    assert [row["dream_steps"] for row in rows] == ["", "0"]  # unknown then; a real-env search dreams nothing
