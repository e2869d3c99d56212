"""Shipping an agent: worldmodels.export writes V, M and C as weights only (float16 on
request), with first latents, all belonging together, and stage 05 drives from the folder."""

import gc
import weakref

import torch
from helpers import save_untrained_agent, save_untrained_models, write_random_rollouts

from worldmodels.checkpoints import controller_config, fingerprint, load_controller, load_model, save_controller
from worldmodels.controller import parameter_count
from worldmodels.episodes import read_initial_latents
import worldmodels.export
from worldmodels.export import main as export


def test_an_exported_float16_agent_belongs_together_and_drives(tmp_path, scripts, capsys):
    source, shipped = tmp_path / "trained", tmp_path / "shipped"
    save_untrained_models(source)
    vae, mdrnn = load_model(source / "vae.pt", "vae"), load_model(source / "mdrnn.pt", "mdrnn")
    config = controller_config(vae, mdrnn, "zh")
    params = torch.randn(parameter_count(config["input_size"])) * 0.1
    save_controller(source / "controller.pt", params.numpy(), config, generation=7, trained_in="dream")
    write_random_rollouts(tmp_path / "rollout", episodes=3, steps=4)
    export([str(source), str(shipped), "--rollout-dir", str(tmp_path / "rollout"), "--float16"])

    raw = torch.load(shipped / "vae.pt", weights_only=True)  # weights only, stored as float16
    assert {t.dtype for t in raw["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    assert "optimizer" not in raw and "progress" not in raw
    vae16, mdrnn16 = load_model(shipped / "vae.pt", "vae"), load_model(shipped / "mdrnn.pt", "mdrnn")
    assert fingerprint(vae16) != fingerprint(vae)  # rounded, so the fingerprints follow
    assert mdrnn16.made_from == {"vae": fingerprint(vae16)}
    shipped_c = load_controller(shipped / "controller.pt", controller_config(vae16, mdrnn16, "zh"))
    assert torch.equal(shipped_c["params"], params) and shipped_c["generation"] == 7 and shipped_c["trained_in"] == "dream"
    assert read_initial_latents(shipped / "initial_latents.npz", 32, fingerprint(vae16))["mu"].shape == (3, 32)
    # the folder is a checkpoint folder for stage 05, in the real env and in the dream
    scripts[4].main(["--evaluate", "1", "--max-steps", "5", "--gif-steps", "0", "--workers", "1", "--dream",
                     "--series-dir", str(shipped), "--checkpoint-dir", str(shipped)])
    assert "(generation 7 of a search in the dream)" in capsys.readouterr().out


def test_export_keeps_only_the_first_frame_of_each_episode_in_memory(tmp_path, monkeypatch):
    """It kept a view of each episode's first frame, and with it every frame of every episode."""
    save_untrained_agent(tmp_path / "trained")
    write_random_rollouts(tmp_path / "rollout", episodes=3, steps=4)
    read, episodes_read = worldmodels.export.read_rollout_frames, []

    def read_and_watch(path):
        gc.collect()
        assert all(episode() is None for episode in episodes_read), "an earlier episode's frames are still in memory"
        frames = owner = read(path)
        while owner.base is not None:  # the array that holds the memory (a view's base is its owner's)
            owner = owner.base
        episodes_read.append(weakref.ref(owner))
        return frames

    monkeypatch.setattr(worldmodels.export, "read_rollout_frames", read_and_watch)
    export([str(tmp_path / "trained"), str(tmp_path / "shipped"), "--rollout-dir", str(tmp_path / "rollout")])
    assert len(episodes_read) == 3
