"""Shared by the fault and reproducibility tests: synthetic data files (faster than driving
CarRacing) and stage scripts run as processes that a test can signal."""

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.checkpoints import controller_config, fingerprint, load_model, save_controller, save_model
from worldmodels.controller import parameter_count
from worldmodels.cli import run_stage
from worldmodels.episodes import episode_id, write_rollout, write_series
from worldmodels.mdrnn import MDNRNN
from worldmodels.vision import ConvVAE

ROOT = Path(__file__).resolve().parent.parent


def _steps(rng: np.random.Generator, steps: int) -> dict[str, np.ndarray]:
    done = np.zeros(steps, dtype=bool)
    done[-1] = True
    return dict(action=rng.uniform(0, 1, (steps, 3)), reward=rng.normal(size=steps), terminated=np.zeros(steps, dtype=bool), done=done)


def write_random_rollouts(folder: Path, episodes: int, steps: int, seed: int = 0, first: int = 0,
                          source: str = "random (a test's)", frame_kind: str = "paper") -> list[Path]:
    """Rollout files of random frames and actions, named ep<first>.npz, ep<first + 1>.npz, ..."""
    rng = np.random.default_rng(seed)
    paths = [folder / f"{episode_id(first + i)}.npz" for i in range(episodes)]
    for path in paths:
        write_rollout(path, rng.integers(0, 256, (steps, 64, 64, 3), dtype=np.uint8), **_steps(rng, steps), source=source,
                      frame_kind=frame_kind)
    return paths


def untrained_vae(z_size: int = 32, frame_kind: str = "paper") -> ConvVAE:
    """A V with random weights, the same ones every time (whatever kind of frame it sees)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return ConvVAE(z_size, frame_kind)


def write_random_series(folder: Path, episodes: int, steps: int, z_size: int = 32, seed: int = 0, vae: str | None = None) -> list[Path]:
    """Series files of random latents, as if the untrained V encoded them (or the V whose
    fingerprint ``vae`` is)."""
    rng = np.random.default_rng(seed)
    vae = vae or fingerprint(untrained_vae(z_size))
    paths = [folder / f"{episode_id(i)}.npz" for i in range(episodes)]
    for path in paths:
        write_series(path, rng.normal(size=(steps, z_size)), rng.normal(-2, 0.1, (steps, z_size)), **_steps(rng, steps), vae=vae)
    return paths


def save_untrained_models(folder: Path, z_size: int = 32, hidden_size: int = 32) -> None:
    """The untrained V and an M with random weights made for it: enough when a test is
    about bookkeeping, not driving."""
    vae = untrained_vae(z_size)
    save_model(folder / "vae.pt", "vae", vae)
    save_model(folder / "mdrnn.pt", "mdrnn", MDNRNN(z_size=z_size, hidden_size=hidden_size), made_from={"vae": fingerprint(vae)})


def models_and_series(tmp_path: Path, encode) -> Path:
    """The untrained V and M in tmp_path/ckpt (returned), and two random rollouts of 8 steps
    (tmp_path/rollout) encoded by that V with stage 03 (``encode``) into tmp_path/series."""
    ckpt = tmp_path / "ckpt"
    save_untrained_models(ckpt)
    write_random_rollouts(tmp_path / "rollout", episodes=2, steps=8)
    encode.main(["--rollout-dir", str(tmp_path / "rollout"), "--series-dir", str(tmp_path / "series"), "--checkpoint-dir", str(ckpt)])
    return ckpt


def save_untrained_agent(folder: Path, bias_gas: float = 1.0) -> np.ndarray:
    """The untrained V and M with a controller that steers a little and gives gas."""
    save_untrained_models(folder)
    vae, mdrnn = load_model(folder / "vae.pt", "vae"), load_model(folder / "mdrnn.pt", "mdrnn")
    config = controller_config(vae, mdrnn, "zh")
    params = np.zeros(parameter_count(config["input_size"]), dtype=np.float32)
    params[-3:] = (0.2, bias_gas, -1.0)
    save_controller(folder / "controller.pt", params, config, generation=1)
    return params


def stage_error(script, argv: list[str]) -> str:
    """The one line a stage exits with (run_stage turns expected errors into it)."""
    with pytest.raises(SystemExit) as stopped:
        run_stage(lambda: script.main(argv))
    message = str(stopped.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def start_stage(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """A stage script as a process in a session of its own, so a signal to its process group
    reaches the stage and all its workers at once, as a terminal's Ctrl-C would. ``env``
    adds to its environment. The folder locks this test process took running stages in
    process are given back first: the stage process is the folders' writer now."""
    from worldmodels.locks import release_all

    release_all()
    return subprocess.Popen([sys.executable, str(ROOT / args[0]), *args[1:]], cwd=cwd, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | env)


def signal_when(process: subprocess.Popen, ready, signal_number: int, timeout: float = 120, group: bool = True) -> str:
    """Send the signal to the stage's process group (or, with ``group=False``, to the stage
    alone, as ``timeout`` does) as soon as ready() holds; returns its output."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"finished before the signal:\n{process.communicate()[0]}"
        assert time.monotonic() < deadline, "never got ready"
        time.sleep(0.05)
    if group:
        os.killpg(process.pid, signal_number)
    else:
        process.send_signal(signal_number)
    return process.communicate(timeout=timeout)[0]


def run_stage_process(args: list[str], cwd: Path) -> str:
    """Run a stage to the end; returns its output (the test fails if it exits non-zero)."""
    process = start_stage(args, cwd)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 0, output
    return output


def log_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))
