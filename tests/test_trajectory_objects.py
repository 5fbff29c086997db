"""bench/trajectory_objects.py: every step's x0 is recorded, and the last one is the sample."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from trajectory_objects import recording, summarise  # noqa: E402

from happyhorse.diffusion import get_schedule  # noqa: E402
from tests.conftest import tiny_pipeline  # noqa: E402


def test_every_step_x0_is_recorded_and_the_last_is_the_sample():
    pipe = tiny_pipeline()
    plain = pipe("a red ball", seed=0)
    calls = recording(pipe)
    out = pipe("a red ball", seed=0)
    assert np.array_equal(out.frames, plain.frames)  # recording leaves the sampling as it was
    sigmas = get_schedule(pipe.scheduler.num_inference_steps, pipe.scheduler.shift)
    assert [s for s, _ in calls] == sigmas[:-1]
    grid = pipe.video_codec.latent_shape(*out.frames.shape[1:4])
    frames = [pipe.video_codec.decode(x0.reshape(1, *grid, -1)).numpy() for _, x0 in calls]
    assert np.array_equal(frames[-1], out.frames)
    assert not np.array_equal(frames[0], out.frames)


def test_summarise_averages_each_step_over_the_clips_that_have_the_metric():
    clips = [
        [{"step": 0, "sigma": 1.0, "colour_accuracy": 1.0, "shape_accuracy": None}],
        [{"step": 0, "sigma": 1.0, "colour_accuracy": 0.0, "object_permanence": 0.5}],
    ]
    row = summarise(clips)[0]
    assert (row["colour_accuracy"], row["shape_accuracy"], row["object_permanence"]) == (0.5, None, 0.5)
