"""Stage 05's --evaluate: a saved controller on tracks never used in training (and in as many
dreams, for a dream search), a row per episode in evaluation.csv, and GIFs of its best,
median and worst drives and of a dream beside the real track it starts from."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from worldmodels.checkpoints import describe_training, load_controller
from worldmodels.env import describe_tracks, track_set
from worldmodels.errors import DataError
from worldmodels.interrupt import Interrupted, stop_requested
from worldmodels.logs import read_csv, write_csv
from worldmodels.results import EpisodeResults
from worldmodels.viewer import record_real, write_dream_vs_real, write_drive
from worldmodels.worlds import Worlds

EVALUATION_FILE = "evaluation.csv"


def summary(returns: np.ndarray) -> str:
    return f"{returns.mean():.1f} ± {returns.std():.1f} (min {returns.min():.1f}, max {returns.max():.1f})"


def read_evaluation(path: Path) -> dict[int, tuple[float, bool | None]]:
    """An evaluation.csv's (return, lap finished) per track seed; lap is None in files written
    before the lap_finished column."""
    try:
        rows = read_csv(path)
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read ({error}); give an evaluation.csv written by --evaluate") from None
    try:
        return {int(row["track_seed"]): (float(row["return"]), bool(int(row["lap_finished"])) if row.get("lap_finished") else None)
                for row in rows}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}: not an evaluation.csv (a track_seed and a return on every row); give one written by "
                        "--evaluate") from None


def paired_with(this: dict[int, tuple[float, bool | None]], other: dict[int, tuple[float, bool | None]], path: Path,
                seeds: list[int]) -> str:
    """One evaluation minus another agent's (read from ``path``) on the same tracks, track by
    track (both {seed: (return, lap)} as read_evaluation gives): the mean difference ± its
    standard error, and both agents' laps where both record them."""
    difference = np.array([this[seed][0] - other[seed][0] for seed in seeds])
    error = f"{difference.std(ddof=1) / np.sqrt(len(seeds)):.1f}" if len(seeds) > 1 else "?"  # one track tells no spread
    level = int((difference == 0).sum())
    line = (f"paired with {path} on the same {len(seeds)} tracks, this minus that: {difference.mean():+.1f} ± {error} "
            f"(standard error); better on {int((difference > 0).sum())}, worse on {int((difference < 0).sum())}"
            + (f", level on {level}" if level else ""))
    if all(this[seed][1] is not None and other[seed][1] is not None for seed in seeds):
        line += f"; laps {sum(this[seed][1] for seed in seeds)} against {sum(other[seed][1] for seed in seeds)}"
    return line


def evaluate_saved(worlds: Worlds, directory: Path, controller_path: str, config: dict, episodes: int, first_track: int,
                   gif_steps: int, paired: Path | None = None) -> None:
    """The saved controller on tracks first_track .. first_track + episodes - 1: a summary, a
    CSV row per episode, and (gif_steps > 0) GIFs of its best, median and worst episodes.
    paired: another agent's evaluation.csv on the same tracks, to compare with track by track."""
    checkpoint = load_controller(controller_path, config)
    params = np.repeat(checkpoint["params"].numpy()[None], episodes, axis=0)
    seeds = [first_track + i for i in range(episodes)]
    other = None
    if paired is not None:  # checked before the episodes run, not after
        other = read_evaluation(paired)
        if missing := [seed for seed in seeds if seed not in other]:
            raise DataError(f"{paired}: has no row for {len(missing)} of these {episodes} tracks (first: seed {missing[0]}); "
                            "pair with an evaluation of the same --tracks and N")
    try:
        results = worlds.real(params, seeds, desc="evaluation episodes", record_actions=gif_steps > 0)
    except Interrupted as stop:
        raise Interrupted(f"the evaluation was stopped unfinished ({stop}); nothing was written: re-run to evaluate") from None
    print(f"controller {controller_path} ({describe_training(checkpoint)}) on {describe_tracks(seeds)}, "
          f"{worlds.describe_renderer()}: {summary(results.returns)}; {int(results.laps.sum())} of {episodes} "
          "episodes ended with the lap done")
    if track_set(seeds) == "test":
        print("test tracks report an agent already chosen; choose between agents or settings with --tracks validation")
    if other is not None:
        # at the precision evaluation.csv records (both sides parsed from "%.2f"), so equal returns differ by exactly 0
        this = {seed: (float(f"{results.returns[i]:.2f}"), bool(results.laps[i])) for i, seed in enumerate(seeds)}
        print(paired_with(this, other, paired, seeds))
    print(f"M's reward head on the same episodes: {summary(results.predicted_returns)}")
    dreamed = None
    if worlds.starts is not None:
        dreamed = worlds.dream(params, seeds).returns
        print(f"in {episodes} dreams at temperature {worlds.temperature}: {summary(dreamed)}")
    table = directory / EVALUATION_FILE
    replaced = " (it replaces the earlier evaluation's)" if table.exists() else ""
    write_csv(table, ["episode", "track_set", "track_seed", "return", "steps", "lap_finished", "steps_since_last_tile",
                      "m_predicted_return", "dream_return"],
              [{"episode": i, "track_set": track_set([seed]), "track_seed": seed, "return": f"{results.returns[i]:.2f}",
                "steps": int(results.steps[i]), "lap_finished": int(results.laps[i]),
                "steps_since_last_tile": int(results.steps_since_last_tile[i]),
                "m_predicted_return": f"{results.predicted_returns[i]:.2f}",
                "dream_return": "" if dreamed is None else f"{dreamed[i]:.2f}"} for i, seed in enumerate(seeds)])
    print(f"wrote {table}, one row per episode{replaced}")
    try:
        write_drive_gifs(worlds, directory, checkpoint["params"].numpy(), seeds, results, gif_steps)
        if worlds.starts is not None:
            write_dream_gif(worlds, directory, controller_path, config, first_track, gif_steps)
    except Interrupted as stop:
        raise Interrupted(f"{table} is written, but {stop}") from None


def write_drive_gifs(worlds: Worlds, directory: Path, params: np.ndarray, seeds: list[int], results: EpisodeResults,
                     gif_steps: int) -> None:
    """drive_{best,median,worst}.gif (and .png stills): the first gif_steps steps of those
    evaluation episodes, with V's reconstruction and M's prediction of every frame. Each GIF
    replays the scored episode's actions (``results.actions``), so it shows the very drive
    whose return the evaluation reports, whatever the precision or batch it was scored in."""
    if gif_steps == 0:
        return
    returns = results.returns
    order = np.argsort(returns, kind="stable")
    for name, i in tqdm([("best", order[-1]), ("median", order[len(order) // 2]), ("worst", order[0])], desc="drive GIFs"):
        if stop_requested():
            raise Interrupted(f"the GIFs were stopped before drive_{name}.gif; re-run --evaluate to make them")
        recording = record_real(worlds.vae, worlds.mdrnn, params, seeds[i], min(gif_steps, worlds.max_steps), worlds.inputs,
                                worlds.fast_render, actions=results.actions[i], fast_acting=worlds.fast_acting,
                                bfloat16=worlds.bfloat16)
        if f"{recording.total_return:.2f}" != f"{returns[i]:.2f}":  # Box2D is deterministic: a replay drives the same
            tqdm.write(f"warning: track {seeds[i]} replayed to {recording.total_return:.2f}, not the scored {returns[i]:.2f}")
        path = directory / f"drive_{name}.gif"
        write_drive(path, recording, f"{name} of {len(returns)}: track {seeds[i]}, return {recording.total_return:.1f}")
        tqdm.write(f"wrote {path} and its stills (.png): track {seeds[i]}, the first {len(recording.rewards)} steps")


def write_dream_gif(worlds: Worlds, directory: Path, controller_path: str, config: dict, track: int, gif_steps: int) -> None:
    """dream_vs_real.gif: the saved controller in a dream beside track ``track``, which it starts from."""
    if gif_steps == 0:
        return
    if stop_requested():
        raise Interrupted("dream_vs_real.gif was not written; re-run --evaluate --dream to make it")
    vae, mdrnn = worlds.vae, worlds.mdrnn
    params = load_controller(controller_path, config)["params"].numpy()
    path = directory / "dream_vs_real.gif"
    real, dream = write_dream_vs_real(path, vae, mdrnn, params, track, worlds.temperature, gif_steps,
                                      inputs=worlds.inputs, fast_render=worlds.fast_render, dropout=worlds.dream_dropout)
    print(f"wrote {path}: {gif_steps} steps on track {track} (return {real.rewards.sum():.1f}) "
          f"beside its dream (return {dream.rewards.sum():.1f})")
