"""Model checkpoints: a state_dict plus the sizes needed to rebuild the model.

A checkpoint is a dict {"kind", "config", "state_dict", ...extra} written atomically.
A training checkpoint (stages 02 and 04) also holds the optimizer and a TrainingProgress:
how far the run got and its random states, so a resumed run continues exactly as an
uninterrupted one would have (on the CPU).
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worldmodels.atomic import save_torch
from worldmodels.episodes import DataError
from worldmodels.mdrnn import MDNRNN
from worldmodels.vae import ConvVAE

VAE_FILE = "vae.pt"
MDRNN_FILE = "mdrnn.pt"
CONTROLLER_FILE = "controller.pt"

_MODELS = {"vae": (ConvVAE, "02_train_vae.py"), "mdrnn": (MDNRNN, "04_train_rnn.py")}


def default_device() -> torch.device:
    """CUDA when the user has it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_model(path: str | Path, kind: str, model: nn.Module, **extra: Any) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"kind": kind, "config": model.config(), "state_dict": state, **extra})


def load_checkpoint(path: str | Path, kind: str, producer: str) -> dict:
    """Read a checkpoint dict, or a DataError naming the file and the script that makes it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; run {producer} first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise DataError(f"{path}: unreadable ({type(error).__name__}); delete it and re-run {producer}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        raise DataError(f"{path}: not a {kind} checkpoint; re-run {producer}")
    return checkpoint


def load_model(path: str | Path, kind: str, **expected_config: Any) -> nn.Module:
    """Rebuild a model from its checkpoint in eval mode on the CPU.

    ``expected_config`` (e.g. z_size=32) must match what the checkpoint was built with."""
    cls, producer = _MODELS[kind]
    checkpoint = load_checkpoint(path, kind, producer)
    config = checkpoint["config"]
    for key, value in expected_config.items():
        if config.get(key) != value:
            raise DataError(f"{path}: built with {key}={config.get(key)}, expected {value}; re-run {producer} with matching sizes")
    model = cls(**config)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


@dataclass
class TrainingProgress:
    """How far a training run got: whole epochs, then (after a Ctrl-C) batches of the next
    epoch with that epoch's running loss sums and seconds, and the random states to go on with."""
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in epoch + 1
    sums: dict[str, float] = field(default_factory=dict)  # loss sums over those batches
    seconds: float = 0.0  # time spent on those batches
    random_state: dict = field(default_factory=dict)

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value


def capture_random_state(rng: np.random.Generator | None = None) -> dict:
    """torch's global random state (CPU and CUDA) and, if given, a numpy generator's."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": rng.bit_generator.state if rng is not None else None}


def restore_random_state(state: dict, rng: np.random.Generator | None = None) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if rng is not None and state.get("numpy") is not None:
        rng.bit_generator.state = state["numpy"]


def save_training(path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, progress: TrainingProgress,
                  rng: np.random.Generator | None = None, **extra: Any) -> None:
    """Model, optimizer and progress, with the random states as they are now."""
    progress.random_state = capture_random_state(rng)
    save_model(path, kind, model, epoch=progress.epoch, optimizer=optimizer.state_dict(), progress=asdict(progress), **extra)


def resume_training(path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, restart: bool,
                    rng: np.random.Generator | None = None) -> TrainingProgress:
    """Load model, optimizer, progress and random states from a training checkpoint; a new
    TrainingProgress when there is none or ``restart`` is set."""
    path = Path(path)
    if restart or not path.exists():
        return TrainingProgress()
    checkpoint = load_checkpoint(path, kind, _MODELS[kind][1])
    if checkpoint["config"] != model.config():
        raise DataError(f"{path}: built with {checkpoint['config']}, not {model.config()}; pass --restart to train a new one")
    if "optimizer" not in checkpoint:
        raise DataError(f"{path}: holds no training state (a model saved for use only); pass --restart to train a new one")
    model.load_state_dict(checkpoint["state_dict"])
    learning_rates = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group, lr in zip(optimizer.param_groups, learning_rates):
        group["lr"] = lr  # the run's --lr, which may differ from the saved run's (e.g. lowered after a NaN loss)
    progress = TrainingProgress(**checkpoint.get("progress", {"epoch": checkpoint["epoch"]}))
    restore_random_state(progress.random_state, rng)
    where = f"batch {progress.batch} of epoch {progress.epoch + 1}" if progress.batch else f"epoch {progress.epoch}"
    print(f"resuming from {path} after {where}")
    return progress


def check_finite_loss(loss: torch.Tensor, path: str | Path, epoch: int) -> None:
    """Stop training on a NaN or inf loss; the checkpoint at ``path`` is the last good one."""
    if not torch.isfinite(loss):
        raise DataError(f"{path}: loss became {loss.item()} in epoch {epoch}; the last good checkpoint is kept; try a lower --lr")
