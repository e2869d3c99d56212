"""Stage 05's search for C, in its phases: set up (a new search, or the saved one resumed), one
generation (CMA-ES: ask, drive, tell; gradient: a batch of dreams, learning as it drives),
check and keep (the search's current controller, the CMA mean or the gradient's point, on
fixed check tracks, and in dreams for a dream search; the best check is saved as the
controller), and finish (what was kept, the curves). The state is saved after every
generation, so a stop loses at most the generation in progress."""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodels.checkpoints import (CONTROLLER_FILE, controller_inputs, fingerprint, load_search_start, refuse_to_replace,
                                     save_controller, training_history)
from worldmodels.controller import parameter_count, search_step_scales
from worldmodels.curves import draw_curves
from worldmodels.dream_gradient import GRADIENT_STATE_FILE, load_gradient_search, new_gradient_search, save_gradient_search
from worldmodels.env import VALIDATION_SEED_BASE, TRAIN_SEED_BASE
from worldmodels.errors import DataError
from worldmodels.evolution import STATE_FILE, load_search, new_search, save_search
from worldmodels.interrupt import Interrupted, stop_requested
from worldmodels.logs import write_csv
from worldmodels.results import EpisodeResults
from worldmodels.rollout import TrainingEpisodes
from worldmodels.search_record import SearchRecord
from worldmodels.worlds import Worlds

LOG_FILE = "controller_log.csv"
LOG_COLUMNS = ["generation", "best", "mean", "worst", "sigma", "check_mean", "check_std", "dream_check_mean",
               "dream_check_std", "surprise", "env_steps", "dream_steps", "seconds"]
# the flag that sets each setting of a saved search (what a refused resume names)
FLAGS = {"population": "--population", "sigma0": "--sigma0", "seed": "--seed", "episodes_per_candidate": "--episodes-per-candidate",
         "check_episodes": "--check-episodes", "check_every": "--check-every", "patience": "--patience",
         "detours": "--detours",
         "max_steps": "--max-steps", "fast_render": "--fast-render", "fast_acting": "--fast-acting",
         "acting_bfloat16": "fast acting's bfloat16 (this machine's CPU)", "world": "--dream", "temperature": "--temperature",
         "members": "--members", "disagreement": "--disagreement", "z_charge": "--z-disagreement and --z-quantile",
         "dream_dropout": "--dream-dropout", "branch_steps": "--branch-steps", "init_from": "--init-from",
         "curiosity": "--curiosity", "use_hidden": "--inputs", "use_cell": "--inputs", "device": "--device", "vae": "V", "mdrnn": "M",
         "learning_rate": "--learning-rate", "truncation": "--truncation"}


@dataclass(frozen=True)
class SearchSettings:
    """The search's flags (stage 05's parse_args names them the same)."""
    generations: int
    population: int
    episodes_per_candidate: int
    sigma0: float
    check_every: int
    check_episodes: int
    patience: int
    seed: int
    dream: bool
    curiosity: float
    init_from: str
    restart: bool
    gradient: bool = False  # learn by gradient in the dream instead of CMA-ES, with:
    learning_rate: float = 0.0
    truncation: int = 0
    detours: float = 0.0  # chance per step that the exploration walk takes the wheel in a training episode
    keep_by: str = ""  # which check keeps the controller: "real" (a dream search's checks on the validation tracks), else its own


def objective(results: EpisodeResults, curiosity: float) -> np.ndarray:
    """What a real episode scores in the search: its return, plus ``curiosity`` x M's
    surprise along it (curiosity: a reward for going where M predicts badly)."""
    return results.returns + curiosity * results.surprise if curiosity else results.returns


class ControllerSearch:
    """The search in ``directory`` for a controller of ``config`` (controller_config), driving
    in ``worlds``: dreams if settings.dream, else real tracks."""

    def __init__(self, settings: SearchSettings, worlds: Worlds, directory: Path, config: dict):
        self.settings, self.worlds, self.directory, self.config = settings, worlds, directory, config
        self.state_path = directory / (GRADIENT_STATE_FILE if settings.gradient else STATE_FILE)
        self.log_path = directory / LOG_FILE
        self.controller_path = directory / CONTROLLER_FILE
        self.check_seeds = [VALIDATION_SEED_BASE + i for i in range(settings.check_episodes)]
        self.state = self._set_up()

    def _search_config(self) -> dict:
        """What a saved search must have been started with to be resumed: everything that sets
        its candidates, its objective or its check tracks (a resume that changed one would rank
        and keep by another measure than the run before)."""
        s, worlds = self.settings, self.worlds
        search_config = self.config | {"population": s.population, "episodes_per_candidate": s.episodes_per_candidate,
                                       "check_episodes": s.check_episodes, "check_every": s.check_every, "patience": s.patience,
                                       "max_steps": worlds.max_steps, "fast_render": worlds.fast_render,
                                       "fast_acting": worlds.fast_acting}
        search_config |= ({"learning_rate": s.learning_rate, "truncation": s.truncation} if s.gradient
                          else {"sigma0": s.sigma0, "seed": s.seed})
        if worlds.fast_acting:
            search_config |= {"acting_bfloat16": worlds.bfloat16}
        if s.dream:
            search_config |= {"world": "dream", "temperature": self.worlds.temperature, "device": self.worlds.device}
            if self.worlds.members:
                search_config |= {"members": [fingerprint(member) for member in self.worlds.members],
                                  "disagreement": self.worlds.disagreement}
                if self.worlds.z_charge is not None:
                    search_config |= {"z_charge": [self.worlds.z_charge.weight, self.worlds.z_charge.threshold]}
            if self.worlds.dream_dropout:
                search_config |= {"dream_dropout": True}
            if self.worlds.start_states is not None:
                search_config |= {"branch_steps": self.worlds.dream_steps}
        if s.init_from:
            search_config |= {"init_from": s.init_from}
        if s.curiosity:
            search_config |= {"curiosity": s.curiosity}
        if s.detours:  # only when given: a search saved before detours existed resumes
            search_config |= {"detours": s.detours}
        return search_config

    def _set_up(self) -> SearchRecord:
        """The saved search if there is one (and --restart is not given), else a new one."""
        s = self.settings
        other_kind = self.directory / (STATE_FILE if s.gradient else GRADIENT_STATE_FILE)  # the other search's state
        # a search state of an older version of this code (a pickle, which is never loaded) counts as an output here
        refuse_to_replace(self.state_path, [self.controller_path, self.log_path, self.directory / "cma_state.pkl", other_kind],
                          s.restart)
        if s.restart:
            other_kind.unlink(missing_ok=True)  # replaced: a later run of the other kind must not resume it
        search_config = self._search_config()
        if self.state_path.exists() and not s.restart:
            load = load_gradient_search if s.gradient else load_search
            state = load(self.state_path, search_config, LOG_COLUMNS, FLAGS)
            if state.best_generation >= 0 and not self.controller_path.exists():
                raise DataError(f"{self.controller_path}: missing, though {self.state_path} kept one at generation "
                                f"{state.best_generation}; put it back, or pass --restart to start a new search")
            print(f"resuming the search from {self.state_path} after generation {state.generation}")
            self.state = state
            self._keep()  # a search extended past its last run's end keeps what an uninterrupted one would
        else:
            start = load_search_start(s.init_from, self.config) if s.init_from else None
            x0, dimension = None if start is None else start["params"].numpy(), parameter_count(self.config["input_size"])
            if s.gradient:
                state = new_gradient_search(dimension, s.learning_rate, search_config, x0)
            else:
                stds = search_step_scales(controller_inputs(self.config), self.config["z_size"], self.config["hidden_size"])
                state = new_search(dimension, s.sigma0, s.population, s.seed, search_config, x0, stds)
            state.history = [] if start is None else training_history(start)
        write_csv(self.log_path, LOG_COLUMNS, state.log)  # the log as the search state has it
        return state

    def describe(self, workers: str) -> str:
        s, parameters = self.settings, parameter_count(self.config["input_size"])
        if s.gradient:
            return (f"gradient ascent over {parameters} parameters in {self.worlds.describe()}: {self.dreams_per_generation} "
                    f"dreams a generation, C updated every {s.truncation} steps (Adam, learning rate {s.learning_rate:g}), {workers}")
        return (f"CMA-ES over {parameters} parameters in {self.worlds.describe()}: population {s.population} x "
                f"{s.episodes_per_candidate} episodes, {workers}")

    @property
    def current(self) -> str:
        """What the checks score: the controller the search stands at."""
        return "C" if self.settings.gradient else "the CMA mean"

    @property
    def dreams_per_generation(self) -> int:
        """A gradient generation: one batch of as many dreams as a CMA-ES generation drives."""
        return self.settings.population * self.settings.episodes_per_candidate

    def _drive(self, generation: int) -> tuple[np.ndarray, EpisodeResults]:
        """One generation's episodes, and each candidate's fitness (gradient: each dream's
        expected return, earned while C learned); tells CMA-ES, or updates C by gradient."""
        s, state = self.settings, self.state
        if s.gradient:
            batch = self.dreams_per_generation
            results = self.worlds.dream_ascent(state, [TRAIN_SEED_BASE + generation * batch + i for i in range(batch)], s.truncation)
            state.generations_done += 1
            return results.returns, results
        candidates = np.asarray(state.es.ask())
        seeds = [TRAIN_SEED_BASE + generation * s.episodes_per_candidate + e for e in range(s.episodes_per_candidate)]
        params = np.repeat(candidates, len(seeds), axis=0)
        if s.dream:
            results = self.worlds.dream(params, seeds * len(candidates))
        else:
            results = self.worlds.real(params, seeds * len(candidates), TrainingEpisodes(s.patience, s.detours),
                                       f"generation {generation}")
        fitness = objective(results, s.curiosity).reshape(len(candidates), len(seeds)).mean(axis=1)
        if not np.isfinite(fitness).all():
            raise DataError(f"generation {generation}: a candidate's return is NaN or inf (V or M of {self.directory} "
                            "misbehaves?); the search is kept as of the generation before")
        state.tell(candidates, fitness)
        return fitness, results

    def run_generation(self) -> str:
        """One generation (``_drive``: CMA-ES asks, drives and tells; the gradient learns as its
        dreams go), a check if it is time, the state and the log saved; returns the line to show."""
        s, state, started = self.settings, self.state, time.time()
        generation = state.generation + 1
        fitness, results = self._drive(generation)
        if not np.isfinite(state.mean).all():
            raise DataError(f"generation {generation}: the controller's parameters are NaN or inf (M of {self.directory} "
                            "misbehaves?); the search is kept as of the generation before")
        env_steps = (0 if s.dream else int(results.steps.sum())) + (state.start_check_steps if generation == 1 else 0)
        scores, check_steps = self.check_and_keep(generation) if generation % s.check_every == 0 or generation == s.generations else ({}, 0)
        shown = {f"{prefix}check_{stat}": f"{scores[world][i]:.1f}" if world in scores else ""
                 for world, prefix in (("real", ""), ("dream", "dream_")) for i, stat in enumerate(("mean", "std"))}
        state.log.append({"generation": str(generation), "best": f"{fitness.max():.1f}", "mean": f"{fitness.mean():.1f}",
                          "worst": f"{fitness.min():.1f}", "sigma": "" if s.gradient else f"{state.es.sigma:.4f}", **shown,
                          "surprise": "" if s.dream else f"{results.surprise.mean():.1f}",
                          "env_steps": str(env_steps + check_steps), "dream_steps": str(int(results.steps.sum()) if s.dream else 0),
                          "seconds": f"{time.time() - started:.1f}"})
        self._save()
        write_csv(self.log_path, LOG_COLUMNS, state.log)
        step_size = "" if s.gradient else f", sigma {state.es.sigma:.3f}"
        return (f"generation {generation}: best {fitness.max():.1f}, mean {fitness.mean():.1f}, worst {fitness.min():.1f}"
                f"{step_size}{self._describe_checks(scores)}")

    def _save(self) -> None:
        (save_gradient_search if self.settings.gradient else save_search)(self.state_path, self.state)

    def _describe_checks(self, scores: dict[str, tuple[float, float]]) -> str:
        return "".join(f"; {self.current} on {len(self.check_seeds)} {'dreams' if world == 'dream' else 'check tracks'} "
                       f"{m:.1f} ± {sd:.1f}" for world, (m, sd) in scores.items())

    def check_start(self) -> str:
        """A search from a saved controller (--init-from) checks it first, as generation 0, so
        that the kept controller is never one that checks worse than the start; its real steps
        go into generation 1's row of the log. Returns the line to show."""
        scores, self.state.start_check_steps = self.check_and_keep(0)
        self._save()
        return f"generation 0 (the starting controller){self._describe_checks(scores)}"

    def check_and_keep(self, generation: int) -> tuple[dict[str, tuple[float, float]], int]:
        """The CMA mean on the check tracks (and, for a dream search, the check dreams); the
        controller is saved when its check beats every earlier one: the dream check for a
        dream search (reality never steers it) unless settings.keep_by is "real", else the
        real one. Returns {world: (mean, std)} and the real steps the check took."""
        mean = self.state.mean
        repeated = np.repeat(mean[None], len(self.check_seeds), axis=0)
        check = self.worlds.real(repeated, self.check_seeds, desc=f"checking {self.current}")
        check_scores = objective(check, self.settings.curiosity)
        scores = {"real": (float(check_scores.mean()), float(check_scores.std()))}
        if self.settings.dream:
            dreamed = self.worlds.dream(repeated, self.check_seeds).returns
            scores["dream"] = float(dreamed.mean()), float(dreamed.std())
        self.state.add_check(generation, scores["dream" if self.settings.dream else "real"][0], mean, scores["real"][0])
        self._keep()
        return scores, int(check.steps.sum())

    def _keep(self) -> None:
        """Save as the controller the best check among those an uninterrupted run to this
        search's end makes: every check_every generations and at the last generation. (A
        search extended past its last run's end drops that end's check, and keeps exactly
        what one run to the new end keeps.) The earliest of equal scores is kept. The score
        compared is the check's own world's, or the real one with keep_by "real" (so that a
        finished dream search resumed with it keeps again, by its real checks, at no step)."""
        state, s = self.state, self.settings
        end = max(s.generations, state.generation)
        key = "real" if s.keep_by == "real" else "score"
        if any(check[key] is None for check in state.checks):
            raise DataError(f"{self.state_path}: saved before its checks' real scores were recorded, so it cannot keep by them; "
                            "pass --restart to search again, or drop --keep-by real")
        best = None
        for i, check in enumerate(state.checks):
            counted = check["generation"] % s.check_every == 0 or check["generation"] == end
            if counted and (best is None or check[key] > state.checks[best][key]):
                best = i
        if best is None:
            state.best_score, state.best_generation = -np.inf, -1
            return
        generation, score = state.checks[best]["generation"], state.checks[best][key]
        if (generation, score) == (state.best_generation, state.best_score):
            return
        if state.best_generation > generation:
            tqdm.write(f"the check at generation {state.best_generation} ended the earlier run; one run to generation {end} "
                       f"makes no check there: keeping generation {generation}'s ({score:.1f}) until a better one")
        state.best_score, state.best_generation = score, generation
        world = "dream" if s.dream else "real"
        start = "zero" if not s.init_from else f"{s.init_from} (controller {fingerprint({'params': torch.as_tensor(state.x0, dtype=torch.float32)})})"
        phase = ({"world": world, "generation": generation, "from": start} | ({"method": "gradient"} if s.gradient else {})
                 | ({"kept_by": "real checks"} if s.dream and key == "real" else {}))
        save_controller(self.controller_path, state.check_means[best], self.config, generation=generation, check_score=score,
                        trained_in=world, history=[*state.history, phase])

    def run(self) -> None:
        """Generations until settings.generations, with a progress bar; a stop request ends
        the run after the generation in progress, with the state saved."""
        saved = self.state.generation  # generations in the state file (a stop during a check comes after the tell)
        bar = tqdm(total=self.settings.generations, initial=saved, desc="generations", unit="gen", dynamic_ncols=True)
        try:
            if saved == 0 and self.settings.init_from and self.state.best_generation < 0:
                tqdm.write(self.check_start())
            while self.state.generation < self.settings.generations:
                line = self.run_generation()
                saved = self.state.generation
                bar.update()
                tqdm.write(line)
                if stop_requested() and self.state.generation < self.settings.generations:
                    raise Interrupted("stop requested")
        except Interrupted:
            if not self.state_path.exists():
                raise Interrupted("no generation had finished, so nothing was saved; re-run to start the search") from None
            raise Interrupted(f"{self.state_path} holds the search after generation {saved}; re-run to go on from there") from None
        finally:
            bar.close()

    def finish(self) -> None:
        """Say what was kept and draw the curves."""
        tracks = not self.settings.dream or self.settings.keep_by == "real"
        print(f"best check of {self.current}: {self.state.best_score:.1f} on the check {'tracks' if tracks else 'dreams'} "
              f"at generation {self.state.best_generation}")
        print(f"wrote {self.controller_path}, {self.state_path}, {self.log_path} and {draw_curves(self.log_path)}")
