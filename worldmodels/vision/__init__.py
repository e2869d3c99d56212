"""V, the vision model: a small family behind one interface (worldmodels.vision.base).

- "vae": the paper's convolutional VAE (worldmodels.vision.vae);
- "vaegan": the same encoder and decoder trained as a VAE-GAN after Larsen et al. 2016
  (worldmodels.vision.vaegan).

Checkpoints record the kind, and ``VISION_MODELS`` rebuilds a model as what it is, so no
stage branches on the model type.
"""

from worldmodels.vision.acting import ActingEncoder, acting_in_bfloat16, cpu_has_native_bfloat16, decode_frames
from worldmodels.vision.base import KL_TOLERANCE, Z_SIZE, TrainingSettings, VisionModel
from worldmodels.vision.vae import ConvVAE, vae_loss
from worldmodels.vision.vaegan import VAEGAN

VISION_MODELS: dict[str, type[VisionModel]] = {model.kind: model for model in (ConvVAE, VAEGAN)}

__all__ = ["VISION_MODELS", "ActingEncoder", "ConvVAE", "KL_TOLERANCE", "TrainingSettings", "VAEGAN", "VisionModel", "Z_SIZE",
           "cpu_has_native_bfloat16", "decode_frames", "vae_loss"]
