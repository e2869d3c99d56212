"""Frame preprocessing, written once and used by every stage.

CarRacing-v3 renders 96x96x3 uint8 frames whose bottom rows 84-95 hold the indicator bar
(speed, ABS, steering, score). The bar leaks the score into the observation and is not
part of the world, so it is cropped before resizing to the 64x64 frame V sees.
"""

from typing import Callable

import numpy as np
from PIL import Image

FRAME_SIZE = 64  # V's input is FRAME_SIZE x FRAME_SIZE x 3
CROP_ROWS = 84  # rows 84-95 of the 96x96 frame are the indicator bar


def preprocess_frame(frame: np.ndarray) -> np.ndarray:
    """Crop the indicator bar and resize with antialiasing.

    frame: uint8 [96, 96, 3] as returned by CarRacing-v3.
    returns: uint8 [64, 64, 3].
    """
    if frame.shape != (96, 96, 3) or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [96, 96, 3] frame, got {frame.dtype} {frame.shape}")
    image = Image.fromarray(frame[:CROP_ROWS])
    # Pillow's bilinear filter widens its support when shrinking, i.e. it antialiases.
    image = image.resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def frame_preparer(agent_frames: bool) -> Callable[[np.ndarray], np.ndarray]:
    """What turns an env observation into V's frame: ``preprocess_frame``, or nothing for
    agent frames (``FastCarRacing(agent_frames=True)`` draws the same crop at 64x64)."""
    return (lambda frame: frame) if agent_frames else preprocess_frame


def frames_to_tensor_layout(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, 64, 64, 3] -> float32 [N, 3, 64, 64] in [0, 1], the layout V takes."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
