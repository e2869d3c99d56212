"""A pygame window that shows pictures, for stage 05's --watch and the dream env's "human"
rendering. pygame (which gymnasium's CarRacing already uses) is imported only when a window
opens, so importing the package never needs a display library."""

import os

import numpy as np


class PictureWindow:
    """Opens on the first picture, sized to it; ``show`` returns False once the user closed the
    window or pressed Esc or Q. ``fps`` (if given) paces the pictures."""

    def __init__(self, caption: str, fps: float | None = None):
        self.caption, self.fps = caption, fps
        self._pygame = self._screen = self._clock = None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the open window, in pixels; None before the first picture."""
        return None if self._screen is None else self._screen.get_size()

    def show(self, picture: np.ndarray) -> bool:
        """picture: uint8 [H, W, 3]."""
        if self._pygame is None:
            os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
            import pygame

            pygame.display.init()
            self._pygame, self._clock = pygame, pygame.time.Clock()
            self._screen = pygame.display.set_mode((picture.shape[1], picture.shape[0]))
            pygame.display.set_caption(self.caption)
        pygame = self._pygame
        self._screen.blit(pygame.surfarray.make_surface(picture.transpose(1, 0, 2)), (0, 0))
        pygame.display.flip()
        stop = any(event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key in (pygame.K_ESCAPE, pygame.K_q))
                   for event in pygame.event.get())
        if self.fps:
            self._clock.tick(self.fps)
        return not stop

    def close(self) -> None:
        if self._pygame is not None:
            self._pygame.display.quit()
            self._pygame = self._screen = self._clock = None
