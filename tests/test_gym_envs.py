"""The gymnasium face: registered ids, round trips through spec, JSON and pickle, the
checker with rendering, vector envs of dreams, rendering, bad actions and light imports."""

import os
import pickle
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.registration import EnvSpec
from gymnasium.utils.env_checker import check_env
from helpers import ROOT, save_untrained_models

from worldmodels.checkpoints import fingerprint, load_model
from worldmodels.env import make_env
from worldmodels.envs import DREAM_ID, FAST_CAR_RACING_ID
from worldmodels.envs.dream_env import PRETRAINED_DIR, DreamEnv
from worldmodels.envs.fast_car_racing import FastCarRacing
from worldmodels.episodes import INITIAL_LATENTS_FILE, write_initial_latents
from worldmodels.errors import DataError
from worldmodels.vision import decode_frames

UNBOUNDED_Z = "ignore:.*Box observation space (minimum|maximum) value is:UserWarning"  # z and h are unbounded


def _rebuilt(env: gym.Env) -> dict[str, gym.Env]:
    """The env rebuilt each way gymnasium users rebuild one."""
    return {"spec": gym.make(env.spec), "json": gym.make(EnvSpec.from_json(env.spec.to_json())),
            "pickle": pickle.loads(pickle.dumps(env))}


def _first_steps(env: gym.Env, seed: int, steps: int) -> list[np.ndarray]:
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    seen = [observation]
    for _ in range(steps):
        seen.append(env.step(env.action_space.sample())[0])
    return seen


def test_gymnasium_makes_the_fast_car_racing_with_every_stock_argument():
    env = gym.make(FAST_CAR_RACING_ID, continuous=False, domain_randomize=True, lap_complete_percent=0.9, downscale=2)
    assert isinstance(env.unwrapped, FastCarRacing) and env.unwrapped.downscale == 2
    assert env.unwrapped.domain_randomize and env.unwrapped.lap_complete_percent == 0.9
    assert env.action_space == gym.spaces.Discrete(5) and env.spec.max_episode_steps == 1000
    assert env.reset(seed=1)[0].shape == (96, 96, 3)
    with pytest.raises(ValueError, match="downscale"):
        gym.make(FAST_CAR_RACING_ID, downscale=0)


def test_the_fast_env_rebuilt_from_its_spec_json_or_pickle_is_the_same_fast_env():
    env = gym.make(FAST_CAR_RACING_ID, downscale=3, agent_frames=True, frame_kind="full", max_episode_steps=50)
    expected = _first_steps(env, seed=4, steps=5)
    for way, copy in _rebuilt(env).items():
        fast = copy.unwrapped
        assert isinstance(fast, FastCarRacing), way
        assert (fast.downscale, fast.agent_frames, fast.frame_kind, copy.spec.max_episode_steps) == (3, True, "full", 50), way
        assert all(np.array_equal(a, b) for a, b in zip(_first_steps(copy, seed=4, steps=5), expected)), way


def test_the_stages_fast_env_carries_the_fast_spec():
    env = make_env(max_steps=30, fast_render=True)
    assert env.spec.id == FAST_CAR_RACING_ID and isinstance(gym.make(env.spec).unwrapped, FastCarRacing)
    assert env.spec.to_json()  # plain values only


def test_gymnasium_makes_the_dream_from_the_shipped_weights():
    env = gym.make(DREAM_ID, temperature=0.5, max_steps=5)
    dream = env.unwrapped
    assert isinstance(dream, DreamEnv) and dream.temperature == 0.5 and dream.frame_kind == "paper"  # the shipped V's
    assert fingerprint(dream.mdrnn) == fingerprint(load_model(PRETRAINED_DIR / "mdrnn.pt", "mdrnn"))
    observation, _ = env.reset(seed=0)
    assert observation.shape == (32 + 256,) and observation.dtype == np.float32
    steps, done, truncated = 0, False, False
    while not (done or truncated):
        *_, done, truncated, _ = env.step(np.array([0.0, 1.0, 0.0], dtype=np.float32))
        steps += 1
    assert steps <= 5


def _dream_folders(tmp_path) -> tuple:
    """A tiny V and M in tmp/ckpt, their first latents in tmp/series."""
    checkpoints, series = tmp_path / "ckpt", tmp_path / "series"
    checkpoints.mkdir()
    series.mkdir()
    save_untrained_models(checkpoints)
    vae = load_model(checkpoints / "vae.pt", "vae")
    mu = np.random.default_rng(0).normal(size=(4, 32)).astype(np.float32)
    write_initial_latents(series / INITIAL_LATENTS_FILE, ["a", "b", "c", "d"], mu, mu * 0 - 2, fingerprint(vae))
    return checkpoints, series


def test_the_dream_rebuilt_from_its_spec_json_or_pickle_dreams_the_same(tmp_path):
    checkpoints, series = _dream_folders(tmp_path)
    env = gym.make(DREAM_ID, checkpoint_dir=str(checkpoints), series_dir=str(series), temperature=0.8, max_steps=40)
    expected = _first_steps(env, seed=9, steps=6)
    for way, copy in _rebuilt(env).items():
        assert copy.unwrapped.temperature == 0.8 and copy.unwrapped.max_steps == 40, way
        assert all(np.array_equal(a, b) for a, b in zip(_first_steps(copy, seed=9, steps=6), expected)), way


def test_a_dream_from_models_in_memory_refuses_to_be_pickled_with_the_way_out():
    env = DreamEnv.from_models(load_model(PRETRAINED_DIR / "mdrnn.pt", "mdrnn"), np.zeros((1, 32)))
    with pytest.raises(TypeError, match="make it from files"):
        pickle.dumps(env)


@pytest.mark.filterwarnings(UNBOUNDED_Z)
def test_both_envs_pass_gymnasiums_checker_with_rendering(tmp_path):
    checkpoints, series = _dream_folders(tmp_path)
    check_env(gym.make(DREAM_ID, checkpoint_dir=checkpoints, series_dir=series, render_mode="rgb_array").unwrapped,
              skip_render_check=False)
    check_env(gym.make(FAST_CAR_RACING_ID, render_mode="rgb_array").unwrapped, skip_render_check=False)


def test_the_dream_renders_vs_decoding_of_its_latent(tmp_path, monkeypatch):
    checkpoints, series = _dream_folders(tmp_path)
    env = gym.make(DREAM_ID, checkpoint_dir=checkpoints, series_dir=series, render_mode="rgb_array")
    observation, _ = env.reset(seed=2)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    vae = load_model(checkpoints / "vae.pt", "vae")
    assert np.array_equal(frame, decode_frames(vae, torch.from_numpy(observation[None, :32]))[0])
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    shown = gym.make(DREAM_ID, checkpoint_dir=checkpoints, series_dir=series, render_mode="human")
    shown.reset(seed=2)
    shown.step(shown.action_space.sample())
    assert shown.render() is None and shown.unwrapped._window.size == (384, 384)
    shown.close()
    with pytest.raises(ValueError, match="render_mode"):
        DreamEnv(checkpoints, series, render_mode="ansi")


@pytest.mark.parametrize("action, problem", [
    ([0.0, 1.0], r"shape \(3,\)"), ([[0.0, 1.0, 0.0]], r"shape \(3,\)"), ([np.nan, 1.0, 0.0], "NaN"),
    ([0.0, np.inf, 0.0], "NaN or inf"), ("full gas", "3 numbers"), (None, r"shape \(3,\)"),
])
def test_the_dream_refuses_a_bad_action_in_one_clear_line(tmp_path, action, problem):
    checkpoints, series = _dream_folders(tmp_path)
    env = DreamEnv(checkpoints, series)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=problem) as refused:
        env.step(action)
    assert str(refused.value).startswith("DreamEnv.step: ") and "\n" not in str(refused.value)
    env.step([5.0, -1.0, 0.5])  # finite but out of range: clipped to the action space, as before


def test_a_dream_without_its_files_says_which_file_and_what_to_do(tmp_path):
    checkpoints, series = _dream_folders(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        DreamEnv(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{INITIAL_LATENTS_FILE}: not found"):
        DreamEnv(checkpoints)  # the first latents are in the series folder, not beside V and M
    other_latents = tmp_path / "other"
    other_latents.mkdir()
    mu = np.zeros((2, 32), dtype=np.float32)
    write_initial_latents(other_latents / INITIAL_LATENTS_FILE, ["a", "b"], mu, mu, vae="0123456789ab")
    with pytest.raises(DataError, match="encoded by V 0123456789ab"):
        DreamEnv(checkpoints, other_latents)


def _run_python(code: str, cwd, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter in ``cwd`` (no sys.path help): its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_an_async_vector_env_of_dreams_steps_and_closes(tmp_path, context):
    # the parent has used torch's thread pool first: a forked worker used to hang in it
    out = _run_python(f"""
        import gymnasium as gym, torch
        import worldmodels
        if __name__ == "__main__":
            torch.randn(256, 256) @ torch.randn(256, 256)
            envs = gym.make_vec("{DREAM_ID}", num_envs=2, vectorization_mode="async", vector_kwargs={{"context": "{context}"}},
                                max_steps=30)
            observations, _ = envs.reset(seed=0)
            for _ in range(40):
                observations, rewards, done, truncated, _ = envs.step(envs.action_space.sample())
            envs.close()
            print(observations.shape, torch.get_num_threads())
        """, tmp_path, timeout=90)
    assert out.split("\n")[0] == f"(2, 288) {torch.get_num_threads()}"  # the parent keeps its own threads


def test_a_sync_vector_env_of_dreams_steps():
    envs = gym.make_vec(DREAM_ID, num_envs=3, vectorization_mode="sync", max_steps=5)
    observations, _ = envs.reset(seed=1)
    for _ in range(8):  # past max_steps: ended dreams restart by themselves
        observations, *_ = envs.step(envs.action_space.sample())
    assert observations.shape == (3, 288)
    envs.close()


def test_the_package_imports_from_any_folder_without_pygame_or_box2d(tmp_path):
    out = _run_python("""
        import sys, gymnasium as gym
        import worldmodels, worldmodels.dream, worldmodels.envs.dream_env, worldmodels.episodes, worldmodels.checkpoints
        env = gym.make("WorldModels/CarRacingDream-v0", max_steps=3)
        env.reset(seed=0)
        print(sorted(m for m in ("pygame", "Box2D") if m in sys.modules), worldmodels.__file__)
        """, tmp_path)
    assert out.startswith("[] ") and str(ROOT / "worldmodels") in out


def _first_python_block(text: str) -> str:
    start = text.index("```python\n") + len("```python\n")
    return text[start:text.index("```\n", start)]


def test_the_readmes_gymnasium_lines_run(tmp_path):
    readme = (ROOT / "README.md").read_text()
    lines = _first_python_block(readme[readme.index("## Use the shipped agents"):])
    out = _run_python(lines + "obs, info = dream.reset(seed=0)\nprint(obs.shape, type(dream.unwrapped).__name__)\n", tmp_path)
    assert out.strip() == "(288,) DreamEnv"
    lines = _first_python_block((ROOT / "docs" / "gymnasium.md").read_text())
    out = _run_python(lines + "print(obs.shape, type(env.unwrapped).__name__)\n", tmp_path)
    assert out.strip() == "(288,) DreamEnv"
