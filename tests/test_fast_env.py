"""The fast renderer changes pictures only, and only a little; so do the agent frames it
draws straight at V's 64x64."""

import numpy as np
import pytest

from worldmodels.env import make_env
from worldmodels.exploration import RandomWalkPolicy
from worldmodels.frames import FRAME_KINDS, frame_preparer, preprocess_frame


@pytest.fixture(scope="module", params=FRAME_KINDS)
def stock_and_fast_episodes(request):
    """Two tracks driven by the same random-walk actions in the stock env, the fast env and the
    fast env drawing agent frames, through the zoom-in of the first second and well past it,
    in each kind of frame (the full frame's indicator bar is drawn by the fast renderer too)."""
    episodes = []
    for seed in (2, 7):
        policy = RandomWalkPolicy(np.random.default_rng(seed))
        actions = [policy() for _ in range(150)]
        runs = []
        for fast, agent_frames in ((False, False), (True, False), (True, True)):
            env = make_env(150, fast_render=fast, agent_frames=agent_frames, frame_kind=request.param)
            prepare = frame_preparer(agent_frames, request.param)
            frame, _ = env.reset(seed=seed)
            frames, outcomes = [prepare(frame)], []
            for action in actions:
                frame, reward, terminated, truncated, _ = env.step(action)
                frames.append(prepare(frame))
                outcomes.append((reward, terminated, truncated))
                if terminated or truncated:
                    break
            env.close()
            runs.append((np.stack(frames), outcomes))
        episodes.append(runs)
    return episodes


def test_rewards_and_done_flags_are_identical(stock_and_fast_episodes):
    for (_, stock), (_, fast), (_, agent) in stock_and_fast_episodes:
        assert stock == fast == agent


@pytest.mark.parametrize("drawn", [1, 2], ids=["fast frames", "agent frames"])
def test_preprocessed_frames_differ_by_at_most_3_of_255(stock_and_fast_episodes, drawn):
    for runs in stock_and_fast_episodes:
        stock, fast = runs[0][0], runs[drawn][0]
        assert stock.shape == fast.shape
        error = np.abs(stock.astype(np.int16) - fast.astype(np.int16))
        assert error.mean() <= 3.0
        assert error.mean(axis=(1, 2, 3)).max() <= 6.0  # no single frame is far off either


def test_agent_frames_are_within_a_grey_level_of_the_fast_frames_they_replace(stock_and_fast_episodes):
    for _, (fast, _), (agent, _) in stock_and_fast_episodes:
        assert np.abs(fast.astype(np.int16) - agent.astype(np.int16)).mean() <= 1.0


def test_agent_frames_are_declared_by_the_observation_space_and_need_the_fast_renderer():
    env = make_env(5, fast_render=True, agent_frames=True)
    frame, _ = env.reset(seed=1)
    assert env.observation_space.shape == frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    env.close()
    with pytest.raises(ValueError, match="fast renderer"):
        make_env(5, fast_render=False, agent_frames=True)


def test_road_tiles_driven_over_are_drawn_as_stock_draws_them():
    """Stock greys a road tile (drops its stripe shade) once a wheel touches it. After 80
    steps straight ahead, 3.8-3.9% of pixels differ by 2/255 or more between the renderers;
    drawing the tiles' original shades instead gave 6.3-6.7%."""
    for seed in (2, 7):
        frames = []
        for fast in (False, True):
            env = make_env(100, fast_render=fast)
            env.reset(seed=seed)
            for _ in range(80):
                frame, *_ = env.step(np.array([0.0, 0.3, 0.0], dtype=np.float32))
            env.close()
            frames.append(preprocess_frame(frame).astype(np.int16))
        assert (np.abs(frames[0] - frames[1]) >= 2).mean() <= 0.05


@pytest.mark.parametrize("randomize", [False, True], ids=["stock colours", "random colours"])
def test_the_playfield_is_filled_where_it_covers_the_canvas_and_drawn_as_a_polygon_at_its_edge(randomize):
    """The field's fill short cut paints exactly the pixels its polygon would, in the middle of
    the playfield and at its edge (where part of the canvas lies outside it and must stay black)."""
    import pygame
    from gymnasium.envs.box2d.car_racing import PLAYFIELD
    from pygame import gfxdraw

    from worldmodels.envs.fast_car_racing import FastCarRacing

    fast = FastCarRacing(domain_randomize=randomize, agent_frames=True)
    fast.reset(seed=3)
    scale = 2.7 / 4  # the camera's zoom after the first second, on the 4x smaller canvas
    outside = 0
    for centre, angle in (((0, 0), 0.3), ((PLAYFIELD - 30, 10), 1.0), ((-PLAYFIELD + 5, PLAYFIELD - 5), -2.0),
                          ((PLAYFIELD + 60, 0), 0.0)):
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        camera = (cos, -sin, sin, cos, 125 - cos * centre[0] + sin * centre[1], 65 - sin * centre[0] - cos * centre[1])
        surfaces = [pygame.Surface((250, 130)) for _ in range(2)]
        fast._draw_field(surfaces[0], camera)
        a, b, c, d, e, f = camera
        corners = [(PLAYFIELD, PLAYFIELD), (PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, -PLAYFIELD), (-PLAYFIELD, PLAYFIELD)]
        gfxdraw.filled_polygon(surfaces[1], [(a * x + b * y + e, c * x + d * y + f) for x, y in corners], fast.bg_color)
        pixels = [pygame.surfarray.array3d(surface) for surface in surfaces]
        np.testing.assert_array_equal(pixels[0], pixels[1])
        outside += int((pixels[1].sum(axis=2) == 0).any())
    assert outside == 3  # the last three views straddle the edge: the polygon path was needed
    fast.close()
