"""V as the agent and the pictures use it: batched encoding while driving, and decoding to
uint8 frames. Any vision model works (it has ``encoder``, ``to_mu`` and ``decode``)."""

import copy
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from worldmodels.vision.base import VisionModel


@torch.no_grad()
def decode_frames(vae: VisionModel, z: torch.Tensor) -> np.ndarray:
    """z [T, Z] (on V's device) -> V's decoded frames, uint8 numpy [T, 64, 64, 3]."""
    return (vae.decode(z.to(torch.float32)).cpu().numpy().transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


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

    def __init__(self, vae: VisionModel):
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
