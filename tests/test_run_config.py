"""Every run records what produced it: flags, resolved paths, the commit, library versions."""

import argparse
import json

from worldmodels.run_config import config_path, write_run_config


def test_config_file_sits_beside_the_log_it_explains(tmp_path):
    assert config_path(tmp_path / "vae_log.csv") == tmp_path / "vae_config.json"
    assert config_path(tmp_path / "mdrnn_member2_log.csv") == tmp_path / "mdrnn_member2_config.json"
    assert config_path(tmp_path / "evaluation.csv") == tmp_path / "evaluation_config.json"


def test_each_run_adds_its_flags_paths_and_versions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "controller_config.json"
    write_run_config(path, argparse.Namespace(generations=3, checkpoint_dir="ckpt", init_from="", dream=False), "05.py")
    write_run_config(path, argparse.Namespace(generations=5, checkpoint_dir="ckpt", init_from="a/c.pt", dream=True), "05.py")
    first, second = json.loads(path.read_text())["runs"]
    assert first["flags"] == {"checkpoint_dir": str(tmp_path / "ckpt"), "dream": False, "generations": 3, "init_from": ""}
    assert second["flags"]["generations"] == 5 and second["flags"]["init_from"] == str(tmp_path / "a" / "c.pt")
    assert {"torch", "numpy", "gymnasium", "cma", "python"} <= set(second["versions"])
    assert "commit" in second and "uncommitted_changes" in second and second["started"].endswith("+00:00")


def test_an_unreadable_config_is_moved_aside_not_lost(tmp_path):
    path = tmp_path / "vae_config.json"
    path.write_text("{not json")
    write_run_config(path, argparse.Namespace(epochs=1), "02.py")
    assert (tmp_path / "vae_config.json.unreadable").read_text() == "{not json"
    assert len(json.loads(path.read_text())["runs"]) == 1
