"""Pictures: 64x64 frames enlarged, captioned and written as PNG or GIF (atomically)."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from worldmodels.atomic import atomic_open

CAPTION_LINE = 12  # pixels per caption line (Pillow's built-in bitmap font is 11 px high)


def enlarge(frame: np.ndarray, scale: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [H * scale, W * scale, 3], each pixel a scale x scale block."""
    return frame.repeat(scale, axis=0).repeat(scale, axis=1)


def text_strip(width: int, lines: list[str]) -> np.ndarray:
    """A black strip ``width`` pixels wide with one line of white text per entry."""
    strip = Image.new("RGB", (width, CAPTION_LINE * len(lines) + 2))
    draw = ImageDraw.Draw(strip)
    for i, line in enumerate(lines):
        draw.text((2, 1 + CAPTION_LINE * i), line, fill=(255, 255, 255))
    return np.asarray(strip)


def captioned(frame: np.ndarray, lines: list[str], scale: int = 3) -> np.ndarray:
    """A frame enlarged ``scale`` times under a text strip."""
    image = enlarge(frame, scale)
    return np.concatenate([text_strip(image.shape[1], lines), image], axis=0)


def side_by_side(panels: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Panels of equal height, left to right, with white gaps."""
    spacer = np.full((panels[0].shape[0], gap, 3), 255, dtype=np.uint8)
    row = [spacer] * (2 * len(panels) - 1)
    row[::2] = panels
    return np.concatenate(row, axis=1)


def save_png(path: str | Path, image: np.ndarray, colours: int | None = None) -> None:
    """image: uint8 [H, W, 3]; ``colours``: reduce to a palette of that many colours (no
    dithering), a file several times smaller for flat-coloured pictures."""
    picture = Image.fromarray(image)
    if colours is not None:
        picture = picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_open(path) as f:
        picture.save(f, format="PNG", optimize=True)


GIF_COLOURS = 64  # one palette for the whole GIF; plenty for CarRacing's flat colours


def save_gif(path: str | Path, frames: list[np.ndarray], fps: float) -> None:
    """frames: uint8 [H, W, 3] each, shown ``fps`` per second, looping.

    All frames share one palette, taken from up to 16 of them, and are not dithered: the
    file is half the size of per-frame palettes with dithering, and as sharp."""
    sample = np.concatenate(frames[:: max(1, len(frames) // 16)], axis=0)
    palette = Image.fromarray(sample).quantize(colors=GIF_COLOURS, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    with atomic_open(path) as f:
        images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
