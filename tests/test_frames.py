import numpy as np
import pytest

from worldmodels.frames import CROP_ROWS, SCORE_COLUMNS, frame_preparer, frames_to_tensor_layout, preprocess_frame


def test_preprocess_gives_64x64_uint8():
    frame = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    out = preprocess_frame(frame)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_indicator_bar_is_cropped_before_resizing():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    changed_bar = frame.copy()
    changed_bar[CROP_ROWS:] = rng.integers(0, 256, (96 - CROP_ROWS, 96, 3), dtype=np.uint8)
    assert np.array_equal(preprocess_frame(frame), preprocess_frame(changed_bar))
    changed_track = frame.copy()
    changed_track[CROP_ROWS - 1] = 255 - changed_track[CROP_ROWS - 1]
    assert not np.array_equal(preprocess_frame(frame), preprocess_frame(changed_track))


def test_the_full_frame_keeps_the_gauges_and_blacks_out_the_score():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    changed_score = frame.copy()
    changed_score[CROP_ROWS:, :SCORE_COLUMNS] = rng.integers(0, 256, (96 - CROP_ROWS, SCORE_COLUMNS, 3), dtype=np.uint8)
    assert np.array_equal(preprocess_frame(frame, "full"), preprocess_frame(changed_score, "full"))
    changed_speed = frame.copy()
    changed_speed[CROP_ROWS:, SCORE_COLUMNS:SCORE_COLUMNS + 3] = 255 - changed_speed[CROP_ROWS:, SCORE_COLUMNS:SCORE_COLUMNS + 3]
    assert not np.array_equal(preprocess_frame(frame, "full"), preprocess_frame(changed_speed, "full"))
    assert preprocess_frame(frame, "full")[-1].any() and not np.array_equal(preprocess_frame(frame, "full"), preprocess_frame(frame))
    assert np.array_equal(frame_preparer(False, "full")(frame), preprocess_frame(frame, "full"))


def test_an_unknown_frame_kind_is_refused():
    with pytest.raises(ValueError, match="a frame kind is one of paper, full, got 'whole'"):
        frame_preparer(False, "whole")


def test_resize_keeps_flat_colours_and_full_range():
    frame = np.zeros((96, 96, 3), dtype=np.uint8)
    frame[:, :48] = 255  # left half white: no contrast stretching, no wrap-around
    out = preprocess_frame(frame)
    assert out[:, :30].min() == 255 and out[:, 34:].max() == 0


def test_preprocess_rejects_wrong_input():
    with pytest.raises(ValueError):
        preprocess_frame(np.zeros((96, 96, 3), dtype=np.float32))


def test_tensor_layout_is_channels_first_in_unit_range():
    frames = np.full((2, 64, 64, 3), 255, dtype=np.uint8)
    x = frames_to_tensor_layout(frames)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32 and x.max() == 1.0
