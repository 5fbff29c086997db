"""bench/ti2v_frame_init.py: TI2V starts later, from the given frame held still; T2V is untouched."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from ti2v_frame_init import start_from_the_given_frame  # noqa: E402

import happyhorse.pipeline as pipeline_module  # noqa: E402
from happyhorse.diffusion import get_schedule  # noqa: E402
from tests.conftest import tiny_pipeline  # noqa: E402


def test_ti2v_starts_at_the_level_from_the_held_frame_and_t2v_is_unchanged(monkeypatch):
    pipe = tiny_pipeline()
    image = np.full((32, 32, 3), 200, np.uint8)
    plain_t2v = pipe("a red ball", seed=1)
    plain_ti2v = pipe("a red ball", image=image, seed=1)
    seen = []
    real = pipe._denoiser

    def recording(*args, **kwargs):
        denoise = real(*args, **kwargs)

        def recorded(xs, sigma):
            seen.append((sigma, xs[0].clone()))
            return denoise(xs, sigma)

        return recorded

    monkeypatch.setattr(pipe, "_denoiser", recording)
    monkeypatch.setattr(pipeline_module, "sample", start_from_the_given_frame(1))
    assert np.array_equal(pipe("a red ball", seed=1).frames, plain_t2v.frames)
    seen.clear()
    held = pipe("a red ball", image=image, seed=1)
    sigmas = get_schedule(pipe.scheduler.num_inference_steps, pipe.scheduler.shift)
    assert [s for s, _ in seen] == sigmas[1:-1]
    # past latent frame 0 (given, clean) the first state is (1 - s) x the held frame + s x zero-mean noise
    grid = pipe.video_codec.latent_shape(*held.frames.shape[1:4])
    later = seen[0][1][:, grid[1] * grid[2] :]
    assert later.mean().item() == pytest.approx((1 - sigmas[1]) * (200 / 127.5 - 1), abs=0.02)
    assert not np.array_equal(held.frames, plain_ti2v.frames)
    monkeypatch.setattr(pipeline_module, "sample", start_from_the_given_frame(3))
    with pytest.raises(ValueError, match="--level: must be below 2 for this schedule, got 3"):
        pipe("a red ball", image=image, seed=1)
