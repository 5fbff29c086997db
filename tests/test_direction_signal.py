"""bench/direction_signal.py: which captions it reads a direction from, and the drift it measures."""

import importlib.util
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location(
    "direction_signal", Path(__file__).resolve().parents[1] / "bench" / "direction_signal.py"
)
direction_signal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(direction_signal)


def test_direction_of_a_caption_needs_exactly_one_direction():
    f = direction_signal.direction_of
    assert f("A red ball is thrown to the right.") == 1 and f("Left: a box slides to the left.") == -1
    assert f("A ball rolls to the left and a box slides to the right.") is None
    assert f("A ball drops and bounces twice.") is None and f("the leftmost ball") is None


def test_drift_follows_a_moving_blob_in_pixels_per_frame():
    frames = np.full((9, 32, 48, 3), 40, np.uint8)
    for t in range(9):  # a 4-pixel square moving right by 2 pixels a frame over a plain background
        frames[t, 10:14, 5 + 2 * t : 9 + 2 * t] = (200, 30, 30)
    assert abs(direction_signal.drift(frames) - 2.0) < 1e-6
    assert abs(direction_signal.drift(frames[:, :, ::-1]) + 2.0) < 1e-6  # mirrored: moving left
    assert abs(direction_signal.drift(np.repeat(frames[:1], 9, axis=0))) < 1e-9  # still
