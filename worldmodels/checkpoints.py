"""Model checkpoints: a state_dict plus the sizes needed to rebuild the model.

A checkpoint is a dict {"kind", "config", "state_dict", ...extra} written atomically.
"""

from pathlib import Path
from typing import Any

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


def resume_training(path: str | Path, kind: str, model: nn.Module, optimizer: torch.optim.Optimizer, restart: bool) -> int:
    """Load model and optimizer state saved after an epoch; returns the epochs already done
    (0 when there is no checkpoint or ``restart`` is set)."""
    path = Path(path)
    if restart or not path.exists():
        return 0
    checkpoint = load_checkpoint(path, kind, _MODELS[kind][1])
    if checkpoint["config"] != model.config():
        raise DataError(f"{path}: built with {checkpoint['config']}, not {model.config()}; pass --restart to train a new one")
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    print(f"resuming from {path} after epoch {checkpoint['epoch']}")
    return checkpoint["epoch"]


def check_finite_loss(loss: torch.Tensor, path: str | Path, epoch: int) -> None:
    """Stop training on a NaN or inf loss; the checkpoint at ``path`` is the last good one."""
    if not torch.isfinite(loss):
        raise DataError(f"{path}: loss became {loss.item()} in epoch {epoch}; the last good checkpoint is kept; try a lower --lr")
