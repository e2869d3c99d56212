"""CarRacing-v3 with a fast state-frame renderer over the stock physics.

``FastCarRacing`` subclasses gymnasium's CarRacing and replaces only the drawing of the
96x96 observation: physics, rewards and termination are the stock code, so the same seed
and actions give the same rewards and done flags. Stock rendering fills a 1000x800 canvas
(about 750 polygons, each transformed in Python, plus a font and the indicator bar) and
shrinks it to 96x96. Here the grass and road polygons are transformed in one numpy
operation, the ones off screen are culled, and the rest are drawn the stock way on a
canvas ``downscale`` times smaller, without the indicator bar and score text (the
pipeline crops those rows; here they show the track instead); then the canvas is
smooth-scaled to 96x96 as in stock.
"""

import math

import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing as stock
from pygame import gfxdraw

DOWNSCALE = 4  # canvas 250x200 instead of 1000x800: a 96x96 frame keeps 2.6x supersampling


class FastCarRacing(stock.CarRacing):
    def __init__(self, *args, downscale: int = DOWNSCALE, **kwargs):
        super().__init__(*args, **kwargs)
        self.downscale = downscale
        self._polygons: tuple[np.ndarray, list[tuple[int, int, int]]] | None = None

    def reset(self, *args, **kwargs):
        self._polygons = None  # a new track
        return super().reset(*args, **kwargs)

    def _track_polygons(self) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """Grass patches and road tiles in world coordinates, [N, 4, 2], and their colours."""
        if self._polygons is None:
            g = stock.GRASS_DIM
            grass = [[(g * x + g, g * y), (g * x, g * y), (g * x, g * y + g), (g * x + g, g * y + g)]
                     for x in range(-20, 20, 2) for y in range(-20, 20, 2)]
            vertices = np.array(grass + [list(poly) for poly, _ in self.road_poly], dtype=np.float64)
            colours = [tuple(int(c) for c in self.grass_color)] * len(grass)
            colours += [tuple(int(c) for c in colour) for _, colour in self.road_poly]
            self._polygons = (vertices, colours)
        return self._polygons

    def _render(self, mode: str):
        if mode != "state_pixels" or "t" not in self.__dict__:
            return super()._render(mode)
        k = self.downscale
        width, height = stock.WINDOW_W // k, stock.WINDOW_H // k
        surface = pygame.Surface((width, height))
        # The camera exactly as stock: rotation, zoom (with the first second's zoom-in), scroll.
        angle = -self.car.hull.angle
        zoom = 0.1 * stock.SCALE * max(1 - self.t, 0) + stock.ZOOM * stock.SCALE * min(self.t, 1)
        scroll = pygame.math.Vector2(-self.car.hull.position[0] * zoom, -self.car.hull.position[1] * zoom).rotate_rad(angle)
        translation = np.array([stock.WINDOW_W / 2 + scroll[0], stock.WINDOW_H / 4 + scroll[1]])
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, sin], [-sin, cos]])  # pygame's rotate_rad, for row vectors

        def to_canvas(points: np.ndarray) -> np.ndarray:
            return ((points @ rotation) * zoom + translation) / k

        b = stock.PLAYFIELD
        field = to_canvas(np.array([(b, b), (b, -b), (-b, -b), (-b, b)], dtype=np.float64)).tolist()
        gfxdraw.aapolygon(surface, field, self.bg_color)
        gfxdraw.filled_polygon(surface, field, self.bg_color)
        vertices, colours = self._track_polygons()
        points = to_canvas(vertices.reshape(-1, 2)).reshape(vertices.shape)
        margin = stock.MAX_SHAPE_DIM / k  # stock's own culling rule, on the smaller canvas
        x, y = points[..., 0], points[..., 1]
        visible = ((x >= -margin) & (x <= width + margin) & (y >= -margin) & (y <= height + margin)).any(axis=1)
        for i in np.flatnonzero(visible):
            polygon = points[i].tolist()
            gfxdraw.aapolygon(surface, polygon, colours[i])
            gfxdraw.filled_polygon(surface, polygon, colours[i])
        self.car.draw(surface, zoom / k, (translation[0] / k, translation[1] / k), angle, False)
        surface = pygame.transform.flip(surface, False, True)
        return self._create_image_array(surface, (stock.STATE_W, stock.STATE_H))
