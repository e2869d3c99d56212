"""The iterative profile at a tiny scale: three rounds complete (with ensemble members, round
two collected by a curious collector, round three with round two's V kept), round two adds its
agent-driven episodes beside round one's without touching them, a re-run after an
interruption goes on where it stopped (all on the full frame), and a given V and a given
collector are used."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from helpers import ROOT, log_rows, save_untrained_agent

from worldmodels.checkpoints import fingerprint, load_model
from worldmodels.episodes import (INITIAL_LATENTS_FILE, list_episodes, read_initial_latents, read_rollout_frame_kind, read_rollout_source,
                                  read_series)

TINY = {"ROUNDS": "3", "V_ROUNDS": "2", "EPISODES": "2", "MAX_STEPS": "40", "WORKERS": "1", "V_EPOCHS": "1", "V_BATCH": "10", "M_EPOCHS": "1",
        "GENERATIONS": "1", "POPULATION": "3", "DREAMS": "1", "CHECK_EPISODES": "1", "EVALUATE": "1", "MEMBERS": "2",
        "CURIOSITY": "0.1", "COLLECTOR_GENERATIONS": "1"}


def _started_from(config: Path) -> str:
    """The --init-from of a stage's last run, from its config.json."""
    return json.loads(config.read_text())["runs"][-1]["flags"]["init_from"]


def _profile(tmp_path, **settings: str) -> subprocess.Popen:
    env = os.environ | TINY | {"DATA": str(tmp_path / "data"), "CKPT": str(tmp_path / "ckpt")} | settings
    return subprocess.Popen(["bash", str(ROOT / "profiles" / "iterative.sh")], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_rounds_on_the_full_frame_complete_add_their_data_and_resume_after_an_interruption(tmp_path):
    rollout, ckpt = tmp_path / "data" / "rollout", tmp_path / "ckpt"
    process = _profile(tmp_path, FRAME="full")
    deadline = time.monotonic() + 300
    while not (ckpt / "round2" / "vae.pt").exists():  # stop it in round two, after its V
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    round_one = {path.name: path.read_bytes() for path in list_episodes(rollout) if path.name < "ep00100000"}
    os.killpg(process.pid, signal.SIGINT)
    process.communicate(timeout=120)
    assert process.returncode != 0

    process = _profile(tmp_path, FRAME="full")  # the re-run goes on
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    assert "iterative profile done" in output and "already trained for 1 epochs" in output  # round one's V was not trained again
    assert [p.name for p in list_episodes(rollout)] == ["ep00000000.npz", "ep00000001.npz", "ep00100000.npz", "ep00100001.npz",
                                                        "ep00200000.npz", "ep00200001.npz"]
    assert {name: (rollout / name).read_bytes() for name in round_one} == round_one
    assert read_rollout_source(rollout / "ep00000001.npz") == "exploration"
    assert {read_rollout_frame_kind(path) for path in list_episodes(rollout)} == {"full"}  # every round, every collector
    assert load_model(ckpt / "round3" / "vae.pt", "vae").frame_kind == "full"
    assert read_rollout_source(rollout / "ep00100000.npz").startswith("agent: controller ")
    assert f"of {ckpt / 'round1' / 'collector'} (V " in read_rollout_source(rollout / "ep00100000.npz")  # the curious collector
    assert len(log_rows(ckpt / "round1" / "collector" / "controller_log.csv")) == 1
    vae2 = fingerprint(load_model(ckpt / "round2" / "vae.pt", "vae"))
    assert vae2 != fingerprint(load_model(ckpt / "round1" / "vae.pt", "vae"))
    for path in list_episodes(tmp_path / "data" / "round2" / "series"):
        assert read_series(path)["vae"] == vae2  # round two's V encoded both rounds' episodes
    for stage_log in ("vae_log.csv", "mdrnn_log.csv", "mdrnn_member1_log.csv", "controller_log.csv"):
        assert len(log_rows(ckpt / "round2" / stage_log)) == 1
    # round three keeps round two's V, and its series hold every round's episodes encoded by it
    assert fingerprint(load_model(ckpt / "round3" / "vae.pt", "vae")) == vae2
    assert [read_series(p)["vae"] for p in list_episodes(tmp_path / "data" / "round3" / "series")] == [vae2] * 6
    assert f"of {ckpt / 'round2'} (V " in read_rollout_source(rollout / "ep00200000.npz")
    # every round's agent on the validation tracks, none on the test tracks; round one's, evaluated before the interruption,
    # is not evaluated again
    for round_dir in ("round1", "round2", "round3"):
        assert [row["track_set"] for row in log_rows(ckpt / round_dir / "evaluation.csv")] == ["validation"]
    assert output.count("episodes ended with the lap done") == 2


def test_a_given_v_is_kept_with_dropout_in_m_a_given_agent_collects_round_two_with_detours_and_a_rerun_leaves_series_alone(tmp_path):
    save_untrained_agent(tmp_path / "given")
    given = fingerprint(load_model(tmp_path / "given" / "vae.pt", "vae"))
    env = os.environ | TINY | {"DATA": str(tmp_path / "data"), "CKPT": str(tmp_path / "ckpt"), "V_ROUNDS": "0",
                               "V_FROM": str(tmp_path / "given" / "vae.pt"), "MEMBERS": "1", "DISAGREEMENT": "0",
                               "CURIOSITY": "0", "DROPOUT": "0.1", "FIRST_EPISODES": "2", "EPISODES": "3",
                               "COLLECTOR": str(tmp_path / "given"), "DETOURS": "0.5"}
    # the profile, again (as after an interruption, or with more ROUNDS), then a third round with a member more
    for more in ({"ROUNDS": "2"}, {"ROUNDS": "2"}, {"ROUNDS": "3", "FROM_ROUND": "3", "MEMBERS": "2"}):
        result = subprocess.run(["bash", str(ROOT / "profiles" / "iterative.sh")], env=env | more,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
    ckpt, data = tmp_path / "ckpt", tmp_path / "data"
    # round 1's series and first latents are what its search used: round 2's episodes are not added
    assert [p.name for p in list_episodes(data / "round1" / "series")] == ["ep00000000.npz", "ep00000001.npz"]
    assert list(read_initial_latents(data / "round1" / "series" / INITIAL_LATENTS_FILE, 32, given)["ids"]) == [
        "ep00000000", "ep00000001"]
    for round_dir in ("round1", "round2"):
        assert fingerprint(load_model(ckpt / round_dir / "vae.pt", "vae")) == given
        assert not (ckpt / round_dir / "vae_log.csv").exists()  # V was never trained
        assert load_model(ckpt / round_dir / "mdrnn.pt", "mdrnn").dropout == 0.1
    assert [read_series(p)["vae"] for p in list_episodes(data / "round2" / "series")] == [given] * 5  # 2 exploration + 3 collected
    assert not (ckpt / "round2" / "mdrnn_member1.pt").exists()
    assert _started_from(ckpt / "round3" / "mdrnn_member1_config.json") == ""  # round 3's new member started afresh
    assert _started_from(ckpt / "round3" / "mdrnn_config.json") == str(ckpt / "round2" / "mdrnn.pt")
    refused = subprocess.run(["bash", str(ROOT / "profiles" / "iterative.sh")], env=env | {"ROUNDS": "6", "FROM_ROUND": "5"},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        f"error: FROM_ROUND=5 needs round 4's agent in {ckpt}/round4; run the earlier rounds first")
    source = read_rollout_source(data / "rollout" / "ep00100002.npz")
    assert f"of {tmp_path / 'given'} (V " in source and source.endswith("detours 0.5")  # the given agent drove, with detours
