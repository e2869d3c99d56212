"""The shipped agents (pretrained/, and pretrained/dream/ whose C was trained only in the
dream): weights only, small, and they still drive. A change to preprocessing, V, M or C that
silently breaks a shipped agent fails here."""

from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.checkpoints import CONTROLLER_FILE, MDRNN_FILE, VAE_FILE, controller_inputs, load_controller_for, load_vae_and_mdrnn
from worldmodels.episodes import INITIAL_LATENTS_FILE, read_initial_latents
from worldmodels.results import EpisodeResults
from worldmodels.rollout import run_agent_episodes

PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"
DREAM = PRETRAINED / "dream"  # the agent whose controller was trained only in M's dream
# Retired tracks the shipped agent lapped in under 750 steps in all 6 ways it was tried (all 12
# tracks 30000000-30000011 in one batch, in pairs, in other pairs; each with and without fast
# acting; 7 of the 12 lapped both ways in the batch; 2026-12-07; the agents shipped before it
# lapped them in under 800). Its episodes are chaotic: a change in the last bit of a latent can
# cost a lap, so the test uses tracks with margin and allows 2000 steps.
LAP_TRACKS = [30000000, 30000008]
LAP_STEPS = 2000


def load_shipped(folder: Path) -> tuple:
    """V, M and C's checkpoint of a shipped folder, and C's config (what it reads is its own)."""
    vae, mdrnn = load_vae_and_mdrnn(str(folder / VAE_FILE), str(folder / MDRNN_FILE))
    return vae, mdrnn, *load_controller_for(folder / CONTROLLER_FILE, vae, mdrnn)


def drive(folder: Path, tracks: list[int], steps: int, fast_acting: bool) -> EpisodeResults:
    """The shipped agent of ``folder`` on ``tracks`` (fast renderer), all in one batch."""
    vae, mdrnn, controller, config = load_shipped(folder)
    params = np.repeat(controller["params"].numpy()[None], len(tracks), axis=0)
    return run_agent_episodes(vae, mdrnn, params, tracks, steps, inputs=controller_inputs(config), fast_render=True,
                              fast_acting=fast_acting)


def test_shipped_files_are_weights_only_float16_and_small():
    for folder in (PRETRAINED, DREAM):
        for name in (VAE_FILE, MDRNN_FILE, CONTROLLER_FILE):
            raw = torch.load(folder / name, weights_only=True)  # fails if anything but plain data is inside
            if name != CONTROLLER_FILE:
                assert {t.dtype for t in raw["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    shipped = [path for path in PRETRAINED.rglob("*") if path.is_file()  # not what --evaluate writes there (.gitignore)
               and path.suffix not in (".gif", ".png", ".json") and path.name != "evaluation.csv"]
    assert sum(path.stat().st_size for path in shipped) <= 25 * 2**20


def test_shipped_dream_agent_was_trained_in_the_dream_and_has_the_latents_its_dreams_start_from():
    _, mdrnn, controller, config = load_shipped(DREAM)
    assert controller["trained_in"] == "dream"
    assert mdrnn.dropout > 0  # its dreams draw a dropout mask every step, as in its search
    latents = read_initial_latents(DREAM / INITIAL_LATENTS_FILE, mdrnn.z_size, config["vae"])
    assert len(latents["mu"]) > 1


@pytest.mark.parametrize("fast_acting", [False, True], ids=["float32 96x96 frames", "fast acting"])
def test_shipped_agent_finishes_a_lap_on_two_fixed_tracks(fast_acting):
    results = drive(PRETRAINED, LAP_TRACKS, LAP_STEPS, fast_acting)
    # A lap ends the episode early; its return is then 1000 - 0.1 x steps (a few tiles may be missed).
    tiles_score = results.returns + 0.1 * results.steps
    assert (results.steps < LAP_STEPS).all() and (tiles_score >= 950).all(), (results.returns, results.steps)
    assert results.laps.all()  # what the env said: the lap was done


# Evaluation tracks on which the shipped dream-trained agent scored 795-851 in all 5 ways it
# was tried (stock renderer; fast renderer with and without fast acting, in a batch of 6 and
# in pairs). It drives slowly and does not lap in 1000 steps, so the test asks for most of
# the track: a car that stands still scores -100, and one that leaves the road far less.
DREAM_TRACKS = [30000066, 30000035]


@pytest.mark.parametrize("fast_acting", [False, True], ids=["float32 96x96 frames", "fast acting"])
def test_shipped_dream_agent_drives_most_of_two_fixed_tracks(fast_acting):
    results = drive(DREAM, DREAM_TRACKS, 1000, fast_acting)
    assert (results.returns >= 700).all(), results.returns
    assert not results.laps.any()  # most of the track, not all of it
