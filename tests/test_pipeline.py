"""One tiny end-to-end run of all five stages, talking only through files."""

import csv
import json

import torch
from PIL import Image

from worldmodels.curves import main as redraw
from worldmodels.episodes import list_episodes, read_initial_latents, read_series
from worldmodels.logs import read_csv


def test_five_stages_run_end_to_end(tmp_path, scripts, capsys):
    generate, train_vae, encode, train_rnn, train_controller = scripts
    rollout, series, ckpt = tmp_path / "rollout", tmp_path / "series", tmp_path / "ckpt"

    generate.main(["--episodes", "3", "--max-steps", "50", "--out-dir", str(rollout), "--workers", "2"])
    assert [p.name for p in list_episodes(rollout)] == ["ep00000000.npz", "ep00000001.npz", "ep00000002.npz"]

    train_vae.main(["--epochs", "1", "--batch-size", "25", "--data-dir", str(rollout), "--checkpoint-dir", str(ckpt)])
    assert (ckpt / "vae.pt").exists()
    assert Image.open(ckpt / "vae_reconstructions.png").size == (8 * 64 * 2, 2 * 64 * 2)

    encode.main(["--rollout-dir", str(rollout), "--series-dir", str(series), "--checkpoint-dir", str(ckpt)])
    first = read_series(series / "ep00000000.npz")
    assert first["mu"].shape == (50, 32)
    assert read_initial_latents(series / "initial_latents.npz", 32, first["vae"])["mu"].shape == (3, 32)

    train_rnn.main(["--epochs", "1", "--batch-size", "4", "--seq-len", "20", "--series-dir", str(series), "--checkpoint-dir", str(ckpt)])
    assert (ckpt / "mdrnn.pt").exists()

    train_controller.main(["--generations", "1", "--population", "3", "--episodes-per-candidate", "1", "--max-steps", "30",
                           "--check-every", "1", "--check-episodes", "1", "--workers", "1", "--checkpoint-dir", str(ckpt)])
    with open(ckpt / "controller_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["check_mean"] != ""
    assert (ckpt / "controller.pt").exists() and (ckpt / "cma_state.npz").exists()

    capsys.readouterr()
    train_controller.main(["--evaluate", "2", "--max-steps", "30", "--workers", "1", "--checkpoint-dir", str(ckpt)])
    printed = capsys.readouterr().out
    assert "on 2 test tracks (seeds 60000000..60000001)" in printed and "±" in printed
    rows = read_csv(ckpt / "evaluation.csv")
    assert [int(r["track_seed"]) for r in rows] == [60000000, 60000001] and all(int(r["steps"]) == 30 for r in rows)
    assert [r["lap_finished"] for r in rows] == ["0", "0"]  # 30 steps: no lap
    for name in ("best", "median", "worst"):  # 30 steps, every second one: the frame, V's and M's pictures side by side
        gif = Image.open(ckpt / f"drive_{name}.gif")
        assert gif.n_frames == 15 and gif.size == (3 * 2 * 64 + 2 * 4, 2 * 12 + 2 + 12 + 2 + 2 * 64)
        assert Image.open(ckpt / f"drive_{name}.png").size == (gif.size[0], 4 * gif.size[1])  # 4 stills
    curves = (("vae_curves.png", 320), ("mdrnn_curves.png", 320), ("controller_curves.png", 480))
    for picture, height in curves:
        assert Image.open(ckpt / picture).size == (1000, height)
        (ckpt / picture).unlink()
    redraw(["--", str(ckpt)])  # python -m worldmodels.curves CHECKPOINT_DIR
    for picture, height in curves:
        assert Image.open(ckpt / picture).size == (1000, height)

    # C trained in M's dream, checked in dreams and on real tracks side by side
    train_controller.main(["--dream", "--restart", "--series-dir", str(series), "--generations", "2", "--population", "4",
                           "--episodes-per-candidate", "2", "--max-steps", "30", "--check-every", "2", "--check-episodes", "1",
                           "--workers", "1", "--gif-steps", "10", "--checkpoint-dir", str(ckpt)])
    with open(ckpt / "controller_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and rows[0]["env_steps"] == "0"  # training touched no real env
    assert 4 * 2 <= int(rows[0]["dream_steps"]) <= 4 * 2 * 30  # 4 candidates x 2 dreams of at most 30 steps
    assert rows[1]["dream_check_mean"] != "" and rows[1]["check_mean"] != ""
    assert torch.load(ckpt / "controller.pt", weights_only=True)["trained_in"] == "dream"
    assert Image.open(ckpt / "dream_vs_real.gif").n_frames == 5  # 10 steps, every second one shown
    assert Image.open(ckpt / "dream_vs_real.png").size == (2 * 3 * 64 + 4, 4 * (3 * 12 + 2 + 3 * 64))  # 4 stills

    capsys.readouterr()
    train_controller.main(["--evaluate", "2", "--dream", "--series-dir", str(series), "--max-steps", "30", "--workers", "1",
                           "--gif-steps", "0", "--checkpoint-dir", str(ckpt)])
    printed = capsys.readouterr().out
    assert "(generation 2 of a search in the dream)" in printed and "in 2 dreams at temperature 1.15" in printed
    assert "M's reward head on the same episodes" in printed

    # every run left its settings beside what it wrote; the controller's two searches are two runs
    for path, script, runs in ((rollout / "collect_config.json", "01_generate_data.py", 1),
                               (ckpt / "vae_config.json", "02_train_vae.py", 1),
                               (series / "encode_config.json", "03_generate_rnn_data.py", 1),
                               (ckpt / "mdrnn_config.json", "04_train_rnn.py", 1),
                               (ckpt / "controller_config.json", "05_train_controller.py", 2),
                               (ckpt / "evaluation_config.json", "05_train_controller.py", 2)):
        recorded = json.loads(path.read_text())["runs"]
        assert len(recorded) == runs and all(run["script"] == script for run in recorded), path
        assert len(recorded[-1]["commit"]) == 40 or recorded[-1]["commit"] == "unknown"
    searches = json.loads((ckpt / "controller_config.json").read_text())["runs"]
    assert [run["flags"]["dream"] for run in searches] == [False, True]
    assert searches[1]["flags"]["series_dir"] == str(series.resolve()) and searches[1]["flags"]["generations"] == 2


def test_rerunning_finished_stages_redoes_nothing(tmp_path, scripts, capsys):
    generate, train_vae, *_ = scripts
    rollout, ckpt = tmp_path / "rollout", tmp_path / "ckpt"
    generate.main(["--episodes", "2", "--max-steps", "20", "--out-dir", str(rollout), "--workers", "1"])
    before = {p.name: p.stat().st_mtime_ns for p in list_episodes(rollout)}
    generate.main(["--episodes", "2", "--max-steps", "20", "--out-dir", str(rollout), "--workers", "1"])
    assert {p.name: p.stat().st_mtime_ns for p in list_episodes(rollout)} == before
    train_vae.main(["--epochs", "1", "--batch-size", "10", "--data-dir", str(rollout), "--checkpoint-dir", str(ckpt)])
    trained = (ckpt / "vae.pt").stat().st_mtime_ns
    capsys.readouterr()
    train_vae.main(["--epochs", "1", "--batch-size", "10", "--data-dir", str(rollout), "--checkpoint-dir", str(ckpt)])
    assert "already trained for 1 epochs" in capsys.readouterr().out
    assert (ckpt / "vae.pt").stat().st_mtime_ns == trained
