"""V: the convolutional VAE of the paper, 64x64x3 frames to z in R^32."""

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

Z_SIZE = 32
KL_TOLERANCE = 0.5  # free bits: the KL term is floored at KL_TOLERANCE * Z_SIZE nats


class ConvVAE(nn.Module):
    """Encoder: 4 convs (kernel 4, stride 2; 32/64/128/256 channels) -> mu, logvar [B, Z].
    Decoder: dense to 1024 -> 4 transposed convs (kernels 5, 5, 6, 6; stride 2) -> sigmoid.
    """

    def __init__(self, z_size: int = Z_SIZE):
        super().__init__()
        self.z_size = z_size
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
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    def config(self) -> dict:
        return {"z_size": self.z_size}


@torch.no_grad()
def decode_frames(vae: ConvVAE, z: torch.Tensor) -> np.ndarray:
    """z [T, Z] -> V's decoded frames, uint8 numpy [T, 64, 64, 3]."""
    return (vae.decode(z.to(torch.float32)).numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def vae_loss(
    x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_tolerance: float = KL_TOLERANCE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: summed squared error + max(KL, kl_tolerance * Z); averaged over the batch.

    returns (loss, reconstruction term, KL term), each a scalar (the two terms unfloored, for logs).
    """
    reconstruction = (recon - x).pow(2).flatten(1).sum(dim=1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    floor = kl_tolerance * mu.shape[1]
    loss = (reconstruction + kl.clamp(min=floor)).mean()
    return loss, reconstruction.mean(), kl.mean()


@lru_cache(maxsize=1)
def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (x86 avx512_bf16 or amx_bf16, read
    from Linux's /proc/cpuinfo; False where that cannot be read): elsewhere bfloat16 is
    emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class ActingEncoder:
    """V's encoder as an agent uses it while driving: uint8 frames in, mu out, with no float
    copy of the batch made in numpy. On a CPU with native bfloat16 it runs a bfloat16 copy of
    the encoder in channels-last layout (oneDNN's fast path, about twice float32's speed),
    else the float32 encoder. mu moves by a few hundredths in bfloat16 (the README's Speed
    section measures it, and the scores it gives); training never uses this.
    """

    def __init__(self, vae: ConvVAE):
        self.device = next(vae.parameters()).device
        self.bfloat16 = self.device.type == "cpu" and cpu_has_native_bfloat16()
        self.dtype = torch.bfloat16 if self.bfloat16 else torch.float32
        self.encoder = (copy.deepcopy(vae.encoder).to(self.dtype).to(memory_format=torch.channels_last)
                        if self.bfloat16 else vae.encoder)
        self.to_mu = copy.deepcopy(vae.to_mu).to(self.dtype) if self.bfloat16 else vae.to_mu

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 [B, 64, 64, 3] -> mu float32 [B, Z]."""
        x = frames.to(self.device).permute(0, 3, 1, 2).to(self.dtype).div_(255)  # channels-last strides
        return self.to_mu(self.encoder(x)).float()
