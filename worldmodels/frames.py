"""Frame preprocessing, written once and used by every stage.

CarRacing-v3 renders 96x96x3 uint8 frames whose bottom rows 84-95 hold the indicator bar:
the score's digits (columns 0-11), then the true speed, the four wheels' ABS sensors, the
steering and the gyroscope. V sees one of two kinds of frame (FRAME_KINDS), resized to 64x64:

- "paper": rows 0-83, the bar cropped (the paper's frame, the default): the world only, but
  the car's speed shows only in how the road moves between frames;
- "full": the whole frame with the score's digits blacked out: the car's own gauges too,
  never its return.

The kind is chosen once, when the episodes are collected (01_generate_data.py --frame), and
travels with V: every later stage prepares frames in its V's kind.
"""

from typing import Callable

import numpy as np
from PIL import Image

FRAME_SIZE = 64  # V's input is FRAME_SIZE x FRAME_SIZE x 3
CROP_ROWS = 84  # rows 84-95 of the 96x96 frame are the indicator bar
SCORE_COLUMNS = 12  # the bar's columns 0-11 hold the score's digits; the speed gauge starts at column 12
PAPER_FRAME, FULL_FRAME = FRAME_KINDS = ("paper", "full")


def bar_rows(kind: str) -> slice:
    """The rows of V's 64x64 frame of ``kind`` that show the indicator bar (none in the paper's)."""
    return slice(FRAME_SIZE, FRAME_SIZE) if check_frame_kind(kind) == PAPER_FRAME else slice(CROP_ROWS * FRAME_SIZE // 96, FRAME_SIZE)


def check_frame_kind(kind: str) -> str:
    if kind not in FRAME_KINDS:
        raise ValueError(f"a frame kind is one of {', '.join(FRAME_KINDS)}, got {kind!r}")
    return kind


def preprocess_frame(frame: np.ndarray, kind: str = PAPER_FRAME) -> np.ndarray:
    """The frame V sees, of ``kind``: the bar cropped ("paper") or the score masked ("full"),
    resized with antialiasing.

    frame: uint8 [96, 96, 3] as returned by CarRacing-v3.
    returns: uint8 [64, 64, 3].
    """
    if frame.shape != (96, 96, 3) or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [96, 96, 3] frame, got {frame.dtype} {frame.shape}")
    if check_frame_kind(kind) == PAPER_FRAME:
        frame = frame[:CROP_ROWS]
    else:
        frame = frame.copy()
        frame[CROP_ROWS:, :SCORE_COLUMNS] = 0  # the bar's own black: the score is gone, the gauges stay
    # Pillow's bilinear filter widens its support when shrinking, i.e. it antialiases.
    image = Image.fromarray(frame).resize((FRAME_SIZE, FRAME_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def frame_preparer(agent_frames: bool, kind: str = PAPER_FRAME) -> Callable[[np.ndarray], np.ndarray]:
    """What turns an env observation into V's frame of ``kind``: ``preprocess_frame``, or
    nothing for agent frames (``FastCarRacing(agent_frames=True, frame_kind=kind)`` draws it at 64x64)."""
    check_frame_kind(kind)
    return (lambda frame: frame) if agent_frames else (lambda frame: preprocess_frame(frame, kind))


def frames_to_tensor_layout(frames: np.ndarray) -> np.ndarray:
    """uint8 [N, 64, 64, 3] -> float32 [N, 3, 64, 64] in [0, 1], the layout V takes."""
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
