"""CarRacing-v3 with a fast state-frame renderer over the stock physics.

``FastCarRacing`` subclasses gymnasium's CarRacing and replaces only the drawing of the
96x96 observation: physics, rewards and termination are the stock code, so the same seed
and actions give the same rewards and done flags. Stock rendering fills a 1000x800 canvas
(about 750 polygons, each transformed in Python, plus a font and the indicator bar) and
shrinks it to 96x96. Here:

- polygons are transformed in numpy (the car's 40 vertices in plain Python), and those
  whose bounding circle misses the canvas are culled before any drawing (about 30 of the
  track's ~700 are in view); the playfield is a fill wherever it covers the whole canvas;
- the canvas is ``downscale`` times smaller (250x200: still 2.6x supersampled for 96x96);
- stock's 1-pixel antialiased polygon outlines are left out: on the smaller canvas they
  would be 4 stock pixels wide, and frames are closer to stock without them;
- the indicator bar is drawn only for the "full" frame (``frame_kind``; stock's own
  ``_render_indicators`` on the smaller canvas), and the score's digits never (that frame
  blacks them out); for the paper's frame the pipeline crops the bar's rows, and here they
  show the track instead.

The canvas is then smooth-scaled to 96x96 as in stock.

``agent_frames=True`` goes one step further for an agent that only needs V's input: the
observation is the 64x64 frame itself, drawn from the canvas rows that preprocessing keeps
(for the paper's frame the indicator bar's rows are never drawn) and smooth-scaled once,
instead of scaling to 96x96, cropping and resizing again (``frames.preprocess_frame``).
Its frames differ from the two-step ones by under a grey level on average
(``benchmarks/fast_env_fidelity.py --agent-frames``); physics and rewards are still the
stock code.
"""

import math
from dataclasses import dataclass

import numpy as np
import pygame
from gymnasium import spaces
from gymnasium.envs.box2d import car_dynamics
from gymnasium.envs.box2d import car_racing as stock
from gymnasium.utils import EzPickle
from pygame import gfxdraw

from worldmodels.frames import CROP_ROWS, FRAME_SIZE, FULL_FRAME, PAPER_FRAME, check_frame_kind

DOWNSCALE = 4  # canvas 250x200 instead of 1000x800: a 96x96 frame keeps 2.6x supersampling


@dataclass(frozen=True)
class _Polygons:
    vertices: np.ndarray  # float64 [N, 4, 2], world coordinates
    centres: np.ndarray  # float64 [N, 2]
    radii: np.ndarray  # float64 [N], distance from the centre to the farthest vertex
    colours: list[np.ndarray]  # [N] RGB arrays, the track's own: a road tile's turns plain grey once a wheel touches it


class FastCarRacing(stock.CarRacing):
    """Stock CarRacing (every constructor argument) drawn by the fast renderer.

    downscale: the canvas is WINDOW_W/downscale x WINDOW_H/downscale (stock: 1);
    agent_frames: observations are V's uint8 [64, 64, 3] frames instead of [96, 96, 3];
    frame_kind: the kind of frame V sees (frames.FRAME_KINDS): "full" draws the indicator bar.
    Only the agent's observations ("state_pixels") are drawn fast; render_mode "human" and
    "rgb_array" show stock's own pictures."""

    def __init__(self, *args, downscale: int = DOWNSCALE, agent_frames: bool = False, frame_kind: str = PAPER_FRAME,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if not (isinstance(downscale, int) and 1 <= downscale <= 8):
            raise ValueError(f"downscale must be an integer from 1 to 8, got {downscale!r}")
        # stock's EzPickle records only its own arguments: a pickled copy must keep these too
        EzPickle.__init__(self, *args, downscale=downscale, agent_frames=agent_frames, frame_kind=frame_kind, **kwargs)
        self.downscale = downscale
        self.agent_frames = agent_frames
        self.frame_kind = check_frame_kind(frame_kind)
        if agent_frames:
            self.observation_space = spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        self._polygons: _Polygons | None = None
        self._car_cache: tuple | None = None

    def reset(self, *args, **kwargs):
        self._polygons = None  # a new track
        return super().reset(*args, **kwargs)

    def _track_polygons(self) -> _Polygons:
        """Grass patches and road tiles of the current track (built once per track)."""
        if self._polygons is None:
            g = stock.GRASS_DIM
            grass = [[(g * x + g, g * y), (g * x, g * y), (g * x, g * y + g), (g * x + g, g * y + g)]
                     for x in range(-20, 20, 2) for y in range(-20, 20, 2)]
            vertices = np.array(grass + [list(poly) for poly, _ in self.road_poly], dtype=np.float64)
            colours = [self.grass_color] * len(grass) + [colour for _, colour in self.road_poly]
            centres = vertices.mean(axis=1)
            radii = np.linalg.norm(vertices - centres[:, None], axis=2).max(axis=1)
            self._polygons = _Polygons(vertices, centres, radii, colours)
        return self._polygons

    def _car_shapes(self) -> tuple[list, list[list[tuple[float, float]]], list[tuple[int, int, int]]]:
        """The car's polygons in body coordinates, with their bodies and colours, in stock's
        drawing order (computed once per car; the wheels' stripes are added per step)."""
        if self._car_cache is None or self._car_cache[0] is not self.car:
            bodies, shapes, colours = [], [], []
            for body in self.car.drawlist:
                for fixture in body.fixtures:
                    bodies.append(body)
                    shapes.append([tuple(vertex) for vertex in fixture.shape.vertices])
                    colours.append(tuple(int(c * 255) for c in body.color))
            self._car_cache = (self.car, bodies, shapes, colours)
        return self._car_cache[1:]

    def _car_polygons(self, camera: tuple[float, float, float, float, float, float]) -> list[tuple[list, tuple[int, int, int]]]:
        """The car as stock draws it (each body's polygons, each wheel followed by its
        turning stripe when that shows), in canvas coordinates. ``camera`` is the canvas's
        affine map (a, b, c, d, e, f: x' = a x + b y + e, y' = c x + d y + f). The car has
        about 40 vertices: plain Python is faster than numpy at this size."""
        a, b, c, d, e, f = camera
        polygons, body_map, last = [], None, None
        for body, shape, colour in zip(*self._car_shapes()):
            if body is not last:  # the body's pose composed with the camera, once per body
                last, (px, py), cos, sin = body, body.position, math.cos(body.angle), math.sin(body.angle)
                body_map = (a * cos + b * sin, b * cos - a * sin, c * cos + d * sin, d * cos - c * sin,
                            a * px + b * py + e, c * px + d * py + f)
            polygons.append((_mapped(shape, body_map), colour))
            if "phase" in body.__dict__ and (stripe := _wheel_stripe(body.phase)) is not None:
                polygons.append((_mapped(stripe, body_map), car_dynamics.WHEEL_WHITE))
        return polygons

    def _render(self, mode: str):
        if mode != "state_pixels" or "t" not in self.__dict__:
            return super()._render(mode)
        k = self.downscale
        width, height = stock.WINDOW_W // k, stock.WINDOW_H // k
        # Agent frames of the paper's kind: only the canvas rows preprocessing keeps (the top
        # CROP_ROWS of 96 once flipped), so the bar's rows are neither drawn nor scaled.
        shown = height * CROP_ROWS // stock.STATE_H if self.agent_frames and self.frame_kind == PAPER_FRAME else height
        surface = pygame.Surface((width, shown))
        # The camera exactly as stock (rotation, zoom with the first second's zoom-in, scroll),
        # as one affine map from world to canvas: x' = a x + b y + e, y' = c x + d y + f.
        angle = -self.car.hull.angle
        zoom = 0.1 * stock.SCALE * max(1 - self.t, 0) + stock.ZOOM * stock.SCALE * min(self.t, 1)
        scroll = pygame.math.Vector2(-self.car.hull.position[0] * zoom, -self.car.hull.position[1] * zoom).rotate_rad(angle)
        scale, cos, sin = zoom / k, math.cos(angle), math.sin(angle)
        camera = (cos * scale, -sin * scale, sin * scale, cos * scale,
                  (stock.WINDOW_W / 2 + scroll[0]) / k, (stock.WINDOW_H / 4 + scroll[1]) / k - (height - shown))
        linear, offset = np.array([[camera[0], camera[2]], [camera[1], camera[3]]]), np.array(camera[4:])

        def to_canvas(points: np.ndarray) -> np.ndarray:
            return points @ linear + offset

        self._draw_field(surface, camera)
        # Cull by bounding circle: only about 30 of the track's ~700 polygons are in view.
        track = self._track_polygons()
        x, y = to_canvas(track.centres).T
        r = track.radii * scale
        visible = np.flatnonzero((x + r >= 0) & (x - r <= width) & (y + r >= 0) & (y - r <= shown))
        points = to_canvas(track.vertices[visible].reshape(-1, 2)).reshape(-1, 4, 2).tolist()
        # Read each time: stock recolours a tile in place when a wheel touches it.
        colours = np.array([track.colours[i] for i in visible.tolist()]).astype(np.int64).tolist()
        for polygon, colour in zip(points, colours):
            gfxdraw.filled_polygon(surface, polygon, colour)
        for polygon, colour in self._car_polygons(camera):
            pygame.draw.polygon(surface, colour, polygon)
        surface = pygame.transform.flip(surface, False, True)
        if self.frame_kind == FULL_FRAME:
            self._draw_indicators(surface)
        frame_w, frame_h = (FRAME_SIZE, FRAME_SIZE) if self.agent_frames else (stock.STATE_W, stock.STATE_H)
        frame = pygame.image.tobytes(pygame.transform.smoothscale(surface, (frame_w, frame_h)), "RGB")
        return np.frombuffer(bytearray(frame), np.uint8).reshape(frame_h, frame_w, 3)  # writable, as stock's

    def _draw_indicators(self, surface: pygame.Surface) -> None:
        """Stock's indicator bar (speed, ABS, steering, gyroscope) on this canvas, by stock's
        own code, which draws on ``self.surf`` at the size it is given; the score's digits,
        which the full frame blacks out, are left undrawn."""
        stock_surface = self.__dict__.get("surf")
        self.surf = surface
        try:
            self._render_indicators(*surface.get_size())
        finally:
            self.surf = stock_surface

    def _draw_field(self, surface: pygame.Surface, camera: tuple[float, ...]) -> None:
        """The playfield's square in its colour. Away from its edge it covers the whole
        canvas, and a fill paints the same pixels as the polygon many times faster (the
        polygon's corners lie far off the canvas, and the rasteriser walks all its rows)."""
        p, (a, b, c, d, e, f) = stock.PLAYFIELD, camera
        width, height = surface.get_size()
        # The canvas's corners, a pixel to spare, back in world coordinates (times scale**2:
        # the map is a rotation times a scale).
        scale2 = a * a + b * b
        corners = [(-1, -1), (width + 1, -1), (-1, height + 1), (width + 1, height + 1)]
        if all(max(abs(a * (x - e) + c * (y - f)), abs(b * (x - e) + d * (y - f))) < p * scale2 for x, y in corners):
            surface.fill([int(channel) for channel in self.bg_color])
        else:
            gfxdraw.filled_polygon(surface, _mapped([(p, p), (p, -p), (-p, -p), (-p, p)], camera), self.bg_color)


def _mapped(points: list[tuple[float, float]], affine: tuple[float, ...]) -> list[tuple[float, float]]:
    """Points through the affine map (a, b, c, d, e, f): x' = a x + b y + e, y' = c x + d y + f."""
    a, b, c, d, e, f = affine
    return [(a * x + b * y + e, c * x + d * y + f) for x, y in points]


def _wheel_stripe(phase: float) -> list[tuple[float, float]] | None:
    """The grey stripe stock draws on a wheel turned by ``phase`` radians, in wheel
    coordinates (4 points), or None when it is hidden (stock's rule, from Car.draw)."""
    s1, s2 = math.sin(phase), math.sin(phase + 1.2)
    if s1 > 0 and s2 > 0:
        return None
    c1 = math.cos(phase) if s1 <= 0 else _sign(math.cos(phase))
    c2 = math.cos(phase + 1.2) if s2 <= 0 else _sign(math.cos(phase + 1.2))
    w, r = car_dynamics.WHEEL_W * car_dynamics.SIZE, car_dynamics.WHEEL_R * car_dynamics.SIZE
    return [(-w, r * c1), (w, r * c1), (w, r * c2), (-w, r * c2)]


def _sign(x: float) -> float:
    return float((x > 0) - (x < 0))
