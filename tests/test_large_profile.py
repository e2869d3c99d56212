"""The large profile at a tiny scale: two rounds complete with C searched in the real env, round
two's agent-driven episodes are added beside round one's without touching them, V and M go on
from round one's weights with early stopping, the search goes on from round one's controller,
and an interruption at any of several points is resumed by re-running the profile."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import ROOT, log_rows

from worldmodels.checkpoints import fingerprint, load_model
from worldmodels.episodes import list_episodes, read_rollout_source, read_series

TINY = {"ROUNDS": "2", "FIRST_EPISODES": "3", "EPISODES": "2", "MAX_STEPS": "40", "WORKERS": "1", "V_EPOCHS": "1", "V_STRIDE": "2",
        "V_BATCH": "10", "V_EPOCHS_NEXT": "3", "M_EPOCHS": "1", "M_EPOCHS_NEXT": "3", "M_BATCH": "2", "M_SEQ": "20",
        "FIRST_GENERATIONS": "1", "GENERATIONS": "2", "POPULATION": "3", "TRACKS_PER_CANDIDATE": "1", "TRACKS_NEXT": "2", "CHECK_EVERY": "1",
        "CHECK_EPISODES": "1", "EVALUATE": "1", "PATIENCE": "20"}


def _profile(tmp_path: Path) -> subprocess.Popen:
    env = os.environ | TINY | {"DATA": str(tmp_path / "data"), "CKPT": str(tmp_path / "ckpt")}
    return subprocess.Popen(["bash", str(ROOT / "profiles" / "large.sh")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _interrupt_when(tmp_path: Path, path: Path) -> None:
    """Run the profile until ``path`` exists, then stop it with Ctrl-C (SIGINT to its group)."""
    process = _profile(tmp_path)
    deadline = time.monotonic() + 300
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=120)


def test_two_real_env_rounds_complete_add_their_data_and_resume_after_interruptions_at_any_stage(tmp_path):
    data, ckpt = tmp_path / "data", tmp_path / "ckpt"
    # one stop in each kind of stage (each stage's own resume is tested with it): collection, the search, round two's
    # collection and round two's M
    for stop_at in (data / "rollout" / "ep00000001.npz", ckpt / "round1" / "controller_log.csv", data / "rollout" / "ep00100000.npz",
                    ckpt / "round2" / "mdrnn.pt"):
        _interrupt_when(tmp_path, stop_at)
        if stop_at.name == "ep00100000.npz":  # round one's episodes, as round two starts adding its own
            round_one = {path.name: path.read_bytes() for path in list_episodes(data / "rollout")}
    process = _profile(tmp_path)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    assert "iterative profile done" in output

    names = [p.name for p in list_episodes(data / "rollout")]
    assert names == ["ep00000000.npz", "ep00000001.npz", "ep00000002.npz", "ep00100000.npz", "ep00100001.npz"]
    assert {name: (data / "rollout" / name).read_bytes() for name in round_one if name < "ep00100000"} == {
        name: data for name, data in round_one.items() if name < "ep00100000"}
    source = read_rollout_source(data / "rollout" / "ep00100000.npz")
    assert source.startswith("agent: controller ") and f"of {ckpt / 'round1'} (V " in source and "parameter noise 0.05" in source
    vae2 = fingerprint(load_model(ckpt / "round2" / "vae.pt", "vae"))
    assert vae2 != fingerprint(load_model(ckpt / "round1" / "vae.pt", "vae"))
    assert [read_series(p)["vae"] for p in list_episodes(data / "round2" / "series")] == [vae2] * 5
    # round two's V and M went on for at most 3 epochs, stopping at the first that did not improve
    for stage_log in ("vae_log.csv", "mdrnn_log.csv"):
        losses = [float(row["held_out_loss"]) for row in log_rows(ckpt / "round2" / stage_log)]
        assert 1 <= len(losses) <= 3
        assert all(b < a for a, b in zip(losses[:-2], losses[1:-1]))  # only the last epoch may fail to improve
    # round two's search went on from round one's controller for 2 generations in the real env, at the smaller step size,
    # with more tracks per candidate
    assert [row["generation"] for row in log_rows(ckpt / "round2" / "controller_log.csv")] == ["1", "2"]
    flags = [run["flags"] for run in json.loads((ckpt / "round2" / "controller_config.json").read_text())["runs"]]
    assert {(f["init_from"], f["dream"], f["sigma0"], f["episodes_per_candidate"]) for f in flags} == {
        (str(ckpt / "round1" / "controller.pt"), False, 0.05, 2)}
    for round_dir in ("round1", "round2"):  # each round's agent on the validation tracks, where the choice between them is made
        assert [row["track_set"] for row in log_rows(ckpt / round_dir / "evaluation.csv")] == ["validation"]
