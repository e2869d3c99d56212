"""--watch: the saved agent drives live in a window (SDL's dummy driver here), or one line
says there is no display and points to the GIFs."""

import sys

import numpy as np
import pytest
import torch
from helpers import save_untrained_models

from worldmodels.checkpoints import controller_config, load_model, save_controller
from worldmodels.controller import parameter_count
from worldmodels.viewer import record_real
from worldmodels.watch import watch


def _agent(folder):
    save_untrained_models(folder)
    vae, mdrnn = load_model(folder / "vae.pt", "vae"), load_model(folder / "mdrnn.pt", "mdrnn")
    config = controller_config(vae, mdrnn, "zh")
    params = (torch.randn(parameter_count(config["input_size"]), generator=torch.Generator().manual_seed(0)) * 0.1).numpy()
    save_controller(folder / "controller.pt", params, config, generation=1)
    return vae, mdrnn, params


def test_watch_shows_the_drive_the_gifs_record(tmp_path, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    vae, mdrnn, params = _agent(tmp_path)
    returns = watch(vae, mdrnn, params, [7, 8], max_steps=6, inputs="zh", fast_render=True, realtime=False)
    assert "pygame" in sys.modules and len(returns) == 2
    recorded = [record_real(vae, mdrnn, params, track, 6).rewards.sum() for track in (7, 8)]
    assert np.allclose(returns, recorded)  # the same agent, the same drive


@pytest.mark.parametrize("driver", ["dummy", ""])
def test_watch_flag_runs_headless_or_says_where_the_gifs_are(tmp_path, scripts, capsys, monkeypatch, driver):
    _agent(tmp_path)
    monkeypatch.setenv("SDL_VIDEODRIVER", driver)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    scripts[4].main(["--watch", "--max-steps", "4", "--checkpoint-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    if driver:
        assert "track 60000000: return" in printed
    else:
        assert printed.count("\n") == 1 and "no display here" in printed and "drive_best.gif" in printed


def test_watch_and_evaluate_are_not_asked_together(scripts):
    with pytest.raises(SystemExit):
        scripts[4].parse_args(["--watch", "--evaluate"])
