"""The kind of frame V sees (the paper's, the bar cropped, or the full frame with the score
blacked out) is chosen once, at collection, travels with V, and is refused in one line
wherever a stage would mix the two."""

import numpy as np
import pytest
import torch
from helpers import save_untrained_agent, save_untrained_models, stage_error, untrained_vae, write_random_rollouts

from worldmodels import export as export_module
from worldmodels.checkpoints import VISION, load_model, save_model
from worldmodels.episodes import list_episodes, read_rollout, read_rollout_frame_kind, read_rollout_source
from worldmodels.frames import bar_rows
from worldmodels.viewer import drive
from worldmodels.vision.vae import row_weights, squared_error

COLLECT, TRAIN_V, ENCODE = 0, 1, 2
BAR_ROWS = slice(56, 64)  # the 64x64 frame's rows that show the indicator bar in the full frame


def _collect(scripts, out, *flags: str) -> None:
    scripts[COLLECT].main(["--episodes", "1", "--max-steps", "12", "--workers", "1", "--out-dir", str(out), *flags])


def _full_agent(folder) -> None:
    """The untrained agent with its V relabelled as seeing full frames (the same weights, so M and C still belong to it)."""
    save_untrained_agent(folder)
    save_model(folder / "vae.pt", "vae", untrained_vae(frame_kind="full"))


def test_full_frames_are_recorded_and_show_the_black_bar_the_paper_s_crop(tmp_path, scripts):
    _collect(scripts, tmp_path / "paper")
    _collect(scripts, tmp_path / "full", "--frame", "full")
    paper, full = (list_episodes(tmp_path / kind)[0] for kind in ("paper", "full"))
    assert read_rollout_frame_kind(paper) == "paper" and read_rollout_frame_kind(full) == "full"
    assert read_rollout(full)["obs"][:, BAR_ROWS].mean() < 40  # the bar's black, a few gauges
    assert read_rollout(paper)["obs"][:, BAR_ROWS].mean() > 80  # grass and road


def test_a_folder_holds_one_kind_of_frame(tmp_path, scripts):
    _collect(scripts, tmp_path / "out")
    message = stage_error(scripts[COLLECT], ["--episodes", "2", "--frame", "full", "--out-dir", str(tmp_path / "out")])
    assert "holds episodes of paper frames, these would be full" in message


def test_an_agent_collects_in_its_own_v_s_kind_of_frame_unless_told_and_drives_the_same_on_either(tmp_path, scripts):
    _full_agent(tmp_path / "agent")
    save_untrained_agent(tmp_path / "paper_agent")
    _collect(scripts, tmp_path / "out", "--policy", str(tmp_path / "agent"))
    assert read_rollout_frame_kind(list_episodes(tmp_path / "out")[0]) == "full"
    for kind in ("paper", "full"):  # a paper-frame driver, its episodes recorded in either kind
        _collect(scripts, tmp_path / kind, "--policy", str(tmp_path / "paper_agent"), "--policy-noise", "0", "--frame", kind)
    paper, full = (list_episodes(tmp_path / kind)[0] for kind in ("paper", "full"))
    assert read_rollout(full)["frame_kind"] == "full" and read_rollout(full)["obs"][:, BAR_ROWS].mean() < 40
    # it saw the same paper frames both times
    np.testing.assert_array_equal(read_rollout(paper)["action"], read_rollout(full)["action"])
    assert "driving on paper frames" in read_rollout_source(full) and "driving on" not in read_rollout_source(paper)


def test_v_learns_its_episodes_kind_of_frame_and_refuses_a_mixed_folder_or_a_start_of_the_other_kind(tmp_path, scripts):
    write_random_rollouts(tmp_path / "full", episodes=2, steps=8, frame_kind="full")
    train = ["--epochs", "1", "--batch-size", "4", "--data-dir", str(tmp_path / "full")]
    scripts[TRAIN_V].main([*train, "--checkpoint-dir", str(tmp_path / "v")])
    assert load_model(tmp_path / "v" / "vae.pt", VISION).frame_kind == "full"
    save_untrained_models(tmp_path / "paper_v")
    message = stage_error(scripts[TRAIN_V], [*train, "--checkpoint-dir", str(tmp_path / "v2"), "--init-from",
                                             str(tmp_path / "paper_v" / "vae.pt")])
    assert "a V of paper frames, and these episodes hold full frames" in message
    write_random_rollouts(tmp_path / "full", episodes=1, steps=8, first=5)  # a paper episode among full ones
    message = stage_error(scripts[TRAIN_V], [*train, "--checkpoint-dir", str(tmp_path / "v3")])
    assert "holds episodes of two kinds of frame (ep00000000.npz: full, ep00000005.npz: paper)" in message


def test_encoding_refuses_episodes_of_another_kind_than_v_s(tmp_path, scripts):
    save_untrained_models(tmp_path / "ckpt")  # a V of the paper's frames
    write_random_rollouts(tmp_path / "rollout", episodes=1, steps=8, frame_kind="full")
    message = stage_error(scripts[ENCODE], ["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"),
                                            "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert "holds full frames, and V" in message and "sees paper frames" in message


@pytest.mark.parametrize("fast_render, fast_acting", [(False, False), (True, False), (True, True)],
                         ids=["stock", "fast renderer", "fast acting"])
def test_the_agent_sees_its_v_s_kind_of_frame(tmp_path, fast_render, fast_acting):
    _full_agent(tmp_path / "full")
    save_untrained_agent(tmp_path / "paper")
    for kind, threshold in (("full", lambda bar: bar < 40), ("paper", lambda bar: bar > 80)):
        vae, mdrnn = load_model(tmp_path / kind / "vae.pt", VISION), load_model(tmp_path / kind / "mdrnn.pt", "mdrnn")
        params = torch.load(tmp_path / kind / "controller.pt", weights_only=True)["params"].numpy()
        frames = np.stack([step.frame for step in drive(vae, mdrnn, params, 3, 8, fast_render=fast_render, fast_acting=fast_acting)])
        assert threshold(frames[:, BAR_ROWS].mean()), kind


def test_a_v_saved_before_frame_kinds_were_recorded_saw_the_paper_s(tmp_path):
    save_untrained_models(tmp_path)
    checkpoint = torch.load(tmp_path / "vae.pt", weights_only=True)
    del checkpoint["config"]["frame_kind"]
    torch.save(checkpoint, tmp_path / "vae.pt")
    assert load_model(tmp_path / "vae.pt", VISION).frame_kind == "paper"


def test_export_refuses_first_frames_of_another_kind_than_v_s(tmp_path):
    save_untrained_agent(tmp_path / "agent")  # V of the paper's frames
    write_random_rollouts(tmp_path / "rollout", episodes=1, steps=4, frame_kind="full")
    message = stage_error(export_module, [str(tmp_path / "agent"), str(tmp_path / "shipped"), "--rollout-dir", str(tmp_path / "rollout")])
    assert "holds full frames, and the V of" in message and not (tmp_path / "shipped" / "vae.pt").exists()


def test_bar_weight_counts_the_full_frame_s_bar_rows_that_many_times_and_nothing_in_the_paper_s():
    x, recon = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    error = (recon - x).pow(2)
    plain = error.flatten(1).sum(1)
    weighted = squared_error(recon, x, row_weights("full", 5.0))
    torch.testing.assert_close(weighted, plain + 4 * error[:, :, BAR_ROWS].flatten(1).sum(1))
    assert row_weights("paper", 5.0) is None and row_weights("full", 1.0) is None
    assert bar_rows("full") == slice(56, 64) and bar_rows("paper").start == bar_rows("paper").stop


def test_v_refuses_a_bar_weight_on_paper_frames(tmp_path, scripts):
    write_random_rollouts(tmp_path / "paper", episodes=2, steps=8)
    message = stage_error(scripts[TRAIN_V], ["--epochs", "1", "--batch-size", "4", "--data-dir", str(tmp_path / "paper"),
                                             "--checkpoint-dir", str(tmp_path / "v"), "--bar-weight", "4"])
    assert "holds paper frames, which have no indicator bar to weight; drop --bar-weight" in message
