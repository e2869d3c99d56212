"""The convolutional VAE of the paper, 64x64x3 frames to z in R^32."""

import torch
from torch import nn

from worldmodels.frames import FRAME_SIZE, PAPER_FRAME, bar_rows, check_frame_kind
from worldmodels.vision.base import KL_TOLERANCE, Z_SIZE, TrainingSettings, VisionModel


class ConvVAE(VisionModel):
    """Encoder: 4 convs (kernel 4, stride 2; 32/64/128/256 channels) -> mu, logvar [B, Z].
    Decoder: dense to 1024 -> 4 transposed convs (kernels 5, 5, 6, 6; stride 2) -> sigmoid.
    """

    kind = "vae"
    loss_terms = ("loss", "recon", "kl")

    def __init__(self, z_size: int = Z_SIZE, frame_kind: str = PAPER_FRAME):
        super().__init__()
        self.z_size, self.frame_kind = z_size, check_frame_kind(frame_kind)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),  # 64 -> 31
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # 31 -> 14
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),  # 14 -> 6
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),  # 6 -> 2
            nn.Flatten(),  # 256 * 2 * 2 = 1024
        )
        self.to_mu = nn.Linear(1024, z_size)
        self.to_logvar = nn.Linear(1024, z_size)
        self.from_z = nn.Linear(z_size, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),  # 1 -> 5
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),  # 5 -> 13
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),  # 13 -> 30
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),  # 30 -> 64
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: float [B, 3, 64, 64] in [0, 1] -> (mu, logvar), each [B, Z]."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, Z] -> reconstruction [B, 3, 64, 64] in [0, 1]."""
        return self.decoder(self.from_z(z)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: [B, 3, 64, 64] -> (reconstruction [B, 3, 64, 64], mu [B, Z], logvar [B, Z])."""
        mu, logvar = self.encode(x)
        return self.decode(sample_latent(mu, logvar)), mu, logvar

    def config(self) -> dict:
        return {"z_size": self.z_size, "frame_kind": self.frame_kind}

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=lr)

    def train_step(self, x: torch.Tensor, optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> dict[str, float]:
        terms = vae_loss(x, *self(x), settings.kl_tolerance, row_weights(self.frame_kind, settings.bar_weight))
        optimizer.zero_grad()
        terms[0].backward()
        optimizer.step()
        return {name: term.item() for name, term in zip(self.loss_terms, terms)}

    def evaluate(self, x: torch.Tensor, settings: TrainingSettings) -> dict[str, float]:
        return {name: term.item() for name, term in zip(self.loss_terms, vae_loss(x, *self(x), settings.kl_tolerance))}


def sample_latent(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z ~ N(mu, exp(logvar)), reparameterised: [B, Z]."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, nats: [B]."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def squared_error(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Summed squared error per item: [B, ...] x 2 -> [B], each element weighted by
    ``weights`` (broadcast to [B, ...]; None: all 1)."""
    error = (a - b).pow(2)
    return (error if weights is None else error * weights.to(error.device)).flatten(1).sum(dim=1)


def row_weights(frame_kind: str, bar_weight: float) -> torch.Tensor | None:
    """[64, 1]: each row's weight in the reconstruction, ``bar_weight`` on the indicator bar's
    rows of a full frame (frames.bar_rows) and 1 elsewhere; None when all are 1."""
    rows = bar_rows(frame_kind)
    if bar_weight == 1 or rows.start == rows.stop:
        return None
    weights = torch.ones(FRAME_SIZE, 1)
    weights[rows] = bar_weight
    return weights


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_tolerance: float = KL_TOLERANCE,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: summed squared error (each pixel weighted by ``weights``, e.g. row_weights)
    + max(KL, kl_tolerance * Z); averaged over the batch.

    returns (loss, reconstruction term, KL term), each a scalar (the two terms unfloored, for logs).
    """
    reconstruction = squared_error(recon, x, weights)
    kl = kl_divergence(mu, logvar)
    loss = (reconstruction + kl.clamp(min=kl_tolerance * mu.shape[1])).mean()
    return loss, reconstruction.mean(), kl.mean()
