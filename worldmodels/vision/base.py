"""The interface every vision model V implements, whatever it is trained with.

Stages 03-05, the dream, the viewer and evaluation see only this: ``encode`` (frames to the
latent distribution's mu and logvar), ``decode`` (z back to a frame), ``config`` (the sizes
and the kind of frame that rebuild it), ``frame_kind`` (the kind of frame it sees,
frames.FRAME_KINDS) and ``kind`` (what its checkpoint records). Stage 02 adds the training half:
``make_optimizer``, ``train_step`` and ``evaluate``, whose terms (``loss_terms``) become the
columns of its log. A checkpoint is rebuilt as the kind it records (worldmodels.vision.build).
"""

from dataclasses import dataclass

import torch
from torch import nn

Z_SIZE = 32
KL_TOLERANCE = 0.5  # free bits: the KL term is floored at KL_TOLERANCE * Z_SIZE nats


@dataclass
class TrainingSettings:
    """What one training step needs beyond the batch; each model reads the fields it uses."""
    kl_tolerance: float = KL_TOLERANCE  # every V: free bits
    gamma: float = 1.0  # VAE-GAN: the decoder's weight on the feature reconstruction against its GAN loss
    pixel_weight: float = 0.0  # VAE-GAN: the pixel reconstruction's weight on encoder and decoder (stage 02's warm-up schedule)
    bar_weight: float = 1.0  # every V: the indicator bar's rows count this many times in the training reconstruction (full frame)


class VisionModel(nn.Module):
    """V: frames float [B, 3, 64, 64] in [0, 1] <-> latents z [B, Z].

    Subclasses give ``encoder`` (frames to a flat feature [B, F]) and ``to_mu`` (F to Z),
    which the acting encoder runs, and implement the methods below."""

    kind: str = ""  # what its checkpoint records, e.g. "vae"
    loss_terms: tuple[str, ...] = ("loss",)  # what train_step and evaluate report; "loss" first
    z_size: int
    frame_kind: str  # the kind of frame it sees (frames.FRAME_KINDS), which every stage prepares for it

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float [B, 3, 64, 64] in [0, 1] -> (mu, logvar), each [B, Z]."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, Z] -> frames [B, 3, 64, 64] in [0, 1]."""
        raise NotImplementedError

    def config(self) -> dict:
        """The keyword arguments that rebuild this model."""
        raise NotImplementedError

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        raise NotImplementedError

    def train_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> dict[str, float]:
        """One update on frames x [B, 3, 64, 64]; returns the batch's mean of each of ``loss_terms``."""
        raise NotImplementedError

    def evaluate(self, x: torch.Tensor, settings: TrainingSettings) -> dict[str, float]:
        """The batch's mean of each of ``loss_terms``, with no update (call under no_grad)."""
        raise NotImplementedError
