"""V as the agent and the pictures use it: batched encoding while driving, and decoding to
uint8 frames. Any vision model works (it has ``encoder``, ``to_mu`` and ``decode``)."""

import copy
import platform
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

with warnings.catch_warnings():  # its modules are built with torch.jit, deprecated (torch is pinned: it is there)
    warnings.simplefilter("ignore", DeprecationWarning)
    from torch.utils.mkldnn import to_mkldnn

from worldmodels.errors import DataError
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


def acting_in_bfloat16(vae: VisionModel) -> bool:
    """Whether fast acting with ``vae`` runs in bfloat16 on this machine (a driver decides it
    once for all its workers)."""
    return next(vae.parameters()).device.type == "cpu" and cpu_has_native_bfloat16()


class ActingEncoder:
    """V's encoder as an agent uses it while driving: uint8 frames in, mu out, with no float
    copy of the batch made in numpy. On a CPU with native bfloat16 it runs a bfloat16 copy of
    the encoder's convolutions as oneDNN modules whose weights are laid out once
    (``torch.utils.mkldnn``; a plain bfloat16 module costs about 0.7 ms more a call, which
    dominates small batches), about twice float32's speed; else the float32 encoder.
    mu moves by a few hundredths in bfloat16 (the README's Speed section measures it, and the
    scores it gives); training never uses this.

    bfloat16: None lets this machine decide (bfloat16 where its CPU has it); True or False is a
    decision made once for a whole run (the driver's, so that on a cluster every worker acts
    alike), and True on a machine without native bfloat16 is refused with a DataError.
    """

    def __init__(self, vae: VisionModel, bfloat16: bool | None = None):
        self.device = next(vae.parameters()).device
        here = self.device.type == "cpu" and cpu_has_native_bfloat16()
        if bfloat16 and not here:
            raise DataError(f"this machine ({platform.node()}) cannot act in bfloat16, which the run chose where it started: "
                            "run it with --no-fast-acting, or only on machines whose CPUs have avx512_bf16 or amx_bf16")
        self.bfloat16 = here if bfloat16 is None else bfloat16
        if self.bfloat16:
            *convolutions, flatten = vae.encoder  # the conv stack, then nn.Flatten (oneDNN tensors cannot be flattened)
            if not isinstance(flatten, torch.nn.Flatten):
                raise TypeError(f"V's encoder must end with nn.Flatten, not {type(flatten).__name__}")
            self.encoder = to_mkldnn(copy.deepcopy(torch.nn.Sequential(*convolutions)), torch.bfloat16)
            self.to_mu = copy.deepcopy(vae.to_mu).to(torch.bfloat16)
        else:
            self.encoder, self.to_mu = vae.encoder, vae.to_mu

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames: uint8 [B, 64, 64, 3] -> mu float32 [B, Z]."""
        x = frames.to(self.device).permute(0, 3, 1, 2).to(torch.float32).div_(255)
        if not self.bfloat16:
            return self.to_mu(self.encoder(x))
        return self.to_mu(self.encoder(x.to_mkldnn(torch.bfloat16)).to_dense().flatten(1)).float()
