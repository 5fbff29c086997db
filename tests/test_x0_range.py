"""bench/x0_range.py: the guided x0's excess over the pixel range, per noise level."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from trajectory_objects import recording  # noqa: E402
from x0_range import range_by_sigma  # noqa: E402

from tests.conftest import tiny_pipeline  # noqa: E402


def test_range_by_sigma_counts_the_excess_and_averages_a_level_walked_twice():
    calls = [(1.0, torch.tensor([0.5, -2.0, 1.5, 0.0])), (0.5, torch.zeros(4)), (0.5, torch.tensor([3.0, 0, 0, 0]))]
    rows = range_by_sigma(calls)
    assert [r["sigma"] for r in rows] == [1.0, 0.5]
    assert rows[0]["share_outside"] == 0.5 and rows[0]["largest"] == 2.0
    assert rows[0]["mean_excess"] == pytest.approx((1.0 + 0.5) / 4)
    assert rows[1]["share_outside"] == pytest.approx(0.125) and rows[1]["largest"] == pytest.approx(1.5)


def test_clamped_sampling_reads_no_excess_where_strong_guidance_has_some():
    pipe = tiny_pipeline()
    calls = recording(pipe)
    pipe("a red ball", seed=2, guidance_scale=30.0, sampler="dpmpp_2m")
    free = range_by_sigma(calls)
    calls.clear()
    pipe("a red ball", seed=2, guidance_scale=30.0, sampler="dpmpp_2m", clamp_x0=True)
    clamped = range_by_sigma(calls)
    assert max(r["share_outside"] for r in free) > 0
    assert all(r["share_outside"] == 0 and r["largest"] <= 1 and r["mean_excess"] == 0 for r in clamped)
