"""Training curves as PNG images, drawn from the stages' CSV logs.

    python -m worldmodels.curves [CHECKPOINT_DIR ...]

redraws every curve whose log is in the folders (default: checkpoints): vae_curves.png
from vae_log.csv (stage 02), mdrnn_curves.png from mdrnn_log.csv (04) and
controller_curves.png from controller_log.csv (05). Each stage also draws its own at the end.
matplotlib draws them: axes, ticks, legends and error bars are its job, done well.
"""

import argparse
import math
from pathlib import Path

import numpy as np

from worldmodels.logs import read_csv
from worldmodels.pictures import save_png

FIGURE_WIDTH, PANEL_HEIGHT, DPI = 10, 3.2, 100  # inches, inches, dots per inch: 1000 x 320 pixels
PLOT_COLOURS = 128  # a palette PNG: a third of the size, no visible loss for a plot


def _columns(path: Path) -> dict[str, np.ndarray]:
    """Each column of a log as floats (an empty cell, e.g. a generation without a check, is NaN)."""
    rows = read_csv(path)
    return {key: np.array([float(row[key]) if row[key] != "" else math.nan for row in rows]) for key in rows[0]} if rows else {}


def _train_and_held_out(ax, x: np.ndarray, log: dict[str, np.ndarray], term: str, title: str, log_scale: bool = False) -> None:
    ax.plot(x, log[f"train_{term}"], marker=".", label="train")
    ax.plot(x, log[f"held_out_{term}"], marker=".", label="held out")
    ax.set(title=title, xlabel="epoch (train: mean over the epoch; held out: at its end)" if term == "recon" else "epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    if log_scale and (log[f"train_{term}"] > 0).all() and (log[f"held_out_{term}"] > 0).all():
        ax.set_yscale("log")
    ax.legend()


def draw_vae(log: dict[str, np.ndarray], fig) -> None:
    """Reconstruction and KL; for a VAE-GAN's log also its discriminator's side of the game."""
    gan = "train_d_real" in log
    recon, kl, *game = fig.subplots(1, 3 if gan else 2)
    _train_and_held_out(recon, log["epoch"], log, "recon",
                        "V: reconstruction (squared error per image)" if gan else "V: reconstruction (summed squared error per image)")
    _train_and_held_out(kl, log["epoch"], log, "kl", "V: KL per image (nats)")
    if gan:
        ax, epoch = game[0], log["epoch"]
        for column, label in (("d_real", "D's BCE on real frames"), ("d_fake", "D's BCE on decoded frames"),
                              ("d_updates", "share of steps D trained"), ("decoder_updates", "share the decoder trained")):
            ax.plot(epoch, log[f"train_{column}"], marker=".", label=label)
        from worldmodels.vision.vaegan import BALANCE_EQUILIBRIUM as middle, BALANCE_MARGIN as margin

        ax.axhspan(middle - margin, middle + margin, alpha=0.1, label=f"BCE where neither rests ({middle} ± {margin})")
        ax.set(title="VAE-GAN: D and the balance (train)", xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="x-small")


def draw_mdrnn(log: dict[str, np.ndarray], fig) -> None:
    nll, reward, done = fig.subplots(1, 3)
    _train_and_held_out(nll, log["epoch"], log, "nll", "M: z mixture NLL (per dim)")
    _train_and_held_out(reward, log["epoch"], log, "reward", "M: reward MSE", log_scale=True)
    _train_and_held_out(done, log["epoch"], log, "done", "M: done BCE", log_scale=True)


def draw_controller(log: dict[str, np.ndarray], fig) -> None:
    ax = fig.subplots()
    generation = log["generation"]
    gradient = np.isnan(log["sigma"]).all()  # a gradient search has no CMA-ES step size
    who, current = ("dreams (expected return while C learned)", "C") if gradient else ("population", "CMA mean")
    ax.fill_between(generation, log["worst"], log["best"], alpha=0.2, label=f"{who}: worst to best")
    ax.plot(generation, log["best"], lw=1, label=f"{who.split(' (')[0]} best")
    ax.plot(generation, log["mean"], lw=1, label=f"{who.split(' (')[0]} mean")
    for column, label in (("check", f"{current} on the check tracks (± std)"), ("dream_check", f"{current} in check dreams (± std)")):
        checked = ~np.isnan(log.get(f"{column}_mean", np.full_like(generation, math.nan)))
        if checked.any():
            ax.errorbar(generation[checked], log[f"{column}_mean"][checked], log[f"{column}_std"][checked], fmt="o", capsize=3,
                        label=label)
    title = "C: gradient ascent in the dream, returns per generation" if gradient else "C: CMA-ES returns per generation"
    ax.set(title=title, xlabel="generation", ylabel="episode return")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize="small")


CURVES = {  # stage log "<kind>_log.csv" (M's ensemble members: "mdrnn_member<k>_log.csv") -> (drawer, panels high)
    "vae": (draw_vae, 1),
    "mdrnn": (draw_mdrnn, 1),
    "controller": (draw_controller, 1.5),
}


def _log_kind(log_path: Path) -> tuple[str, str]:
    """("mdrnn_member1", "mdrnn") for mdrnn_member1_log.csv: the log's name and its stage's kind."""
    name = log_path.name.removesuffix("_log.csv")
    return name, name.split("_member")[0]


def draw_curves(log_path: str | Path) -> Path | None:
    """Draw the picture of one stage log beside it ("<name>_log.csv" -> "<name>_curves.png");
    None if the log has no rows yet."""
    log_path = Path(log_path)
    name, kind = _log_kind(log_path)
    draw, panels = CURVES[kind]
    picture = f"{name}_curves.png"
    log = _columns(log_path)
    if not log:
        return None
    # imported here, not at the top: every stage imports this module, and their worker
    # processes (which never draw) would pay for matplotlib's import too
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * panels), dpi=DPI, layout="constrained")
    try:
        draw(log, fig)
        fig.canvas.draw()
        save_png(log_path.parent / picture, np.asarray(fig.canvas.buffer_rgba())[..., :3], colours=PLOT_COLOURS)
    finally:
        plt.close(fig)
    return log_path.parent / picture


def redraw_all(folder: str | Path) -> list[Path]:
    """Every picture whose log is in ``folder``; returns the pictures drawn."""
    drawn = []
    for log_path in sorted(Path(folder).glob("*_log.csv")):
        if _log_kind(log_path)[1] in CURVES and (picture := draw_curves(log_path)) is not None:
            drawn.append(picture)
    return drawn


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", default=["checkpoints"], help="checkpoint folders holding the stages' logs")
    args = parser.parse_args(argv)
    for folder in args.folders:
        drawn = redraw_all(folder)
        print(f"{folder}: " + (", ".join(p.name for p in drawn) if drawn else "no logs with rows"))


if __name__ == "__main__":
    main()
