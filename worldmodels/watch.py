"""Stage 05's --watch: a window that shows the agent driving live, beside what V and M see.

Four panels a step, at CarRacing's 50 steps per second: the env's frame, the 64x64 frame C
sees, V's reconstruction of it, and M's prediction of it made one step earlier. Close the
window or press Esc or Q to stop. pygame (which gymnasium's CarRacing already uses) is
imported only here, only when watching. With no display (a server, CI) it says so in one line
and points to the GIFs that --evaluate writes; SDL_VIDEODRIVER=dummy runs it headless.
"""

import os
import sys

import numpy as np
import torch

from worldmodels.mdrnn import MDNRNN
from worldmodels.pictures import captioned, side_by_side, text_strip
from worldmodels.vision import VisionModel, decode_frames
from worldmodels.viewer import NOTHING_YET, drive
from worldmodels.window import PictureWindow

STEPS_PER_SECOND = 50  # CarRacing's frame rate
SCALE = 4  # 64x64 panels drawn 256x256; the env's 96x96 frame at 256x256 too (scaled by 8/3)


def display_problem() -> str | None:
    """Why no window can open here (None: one can, or SDL was told which video driver to use)."""
    if os.environ.get("SDL_VIDEODRIVER"):
        return None
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display here (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


def _env_panel(observation: np.ndarray, size: int) -> np.ndarray:
    """The env's frame [96, 96, 3] resized to [size, size, 3] (nearest pixel), under a caption."""
    index = np.arange(size) * observation.shape[0] // size
    return np.concatenate([text_strip(size, ["the track"]), observation[index][:, index]], axis=0)


def watch(vae: VisionModel, mdrnn: MDNRNN, params: np.ndarray, tracks: list[int], max_steps: int, inputs: str,
          fast_render: bool, realtime: bool = True) -> list[float]:
    """Show controller ``params`` [P] driving each of ``tracks`` in a window; returns the return
    of every track driven (the last one cut short if the window was closed)."""
    window, returns = PictureWindow("World Models: the agent, and what V and M see", STEPS_PER_SECOND if realtime else None), []
    try:
        for track in tracks:
            total, predicted = 0.0, None
            for t, step in enumerate(drive(vae, mdrnn, params, track, max_steps, inputs, fast_render)):
                total += step.reward
                seen = decode_frames(vae, torch.stack([step.z, step.next_z]))  # V's reconstruction, M's next prediction
                prediction = np.full_like(step.frame, NOTHING_YET) if predicted is None else predicted
                predicted = seen[1]
                steer, gas, brake = step.action
                panels = [_env_panel(step.observation, 64 * SCALE)] + [
                    captioned(image, [name], SCALE) for image, name in
                    ((step.frame, "what C sees"), (seen[0], "V's reconstruction"), (prediction, "M's prediction"))]
                row = side_by_side(panels)
                picture = np.concatenate([text_strip(row.shape[1], [
                    f"track {track}  step {t + 1}  return {total:.1f}",
                    f"steer {steer:+.2f}  gas {gas:.2f}  brake {brake:.2f}"]), row])
                if not window.show(picture):
                    returns.append(total)
                    return returns
            returns.append(total)
            print(f"track {track}: return {total:.1f}")
    finally:
        window.close()
    return returns
