"""scripts/interpolate_models.py: the weight line between a model and its fine-tune (WiSE-FT)."""

import importlib.util
from pathlib import Path

import pytest
import torch

spec = importlib.util.spec_from_file_location(
    "interpolate_models", Path(__file__).resolve().parents[1] / "scripts" / "interpolate_models.py"
)
interpolate_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(interpolate_models)
interpolate = interpolate_models.interpolate


def test_interpolation_walks_the_line_from_a_to_b_in_float32():
    a = {"w": torch.tensor([0.0, 2.0], dtype=torch.float16), "count": torch.tensor([3])}
    b = {"w": torch.tensor([4.0, -2.0]), "count": torch.tensor([3])}
    torch.testing.assert_close(interpolate(a, b, 0.0)["w"], torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(interpolate(a, b, 1.0)["w"], torch.tensor([4.0, -2.0]))
    mid = interpolate(a, b, 0.25)
    assert mid["w"].dtype == torch.float32
    torch.testing.assert_close(mid["w"], torch.tensor([1.0, 1.0]))
    assert torch.equal(mid["count"], torch.tensor([3]))  # integer buffers are copied, not mixed
    # past 1 it extrapolates: A and the midpoint of A and B give B back
    torch.testing.assert_close(interpolate(a, interpolate(a, b, 0.5), 2.0)["w"], b["w"])


def test_interpolation_refuses_two_different_architectures():
    with pytest.raises(ValueError, match="differ in their weights"):
        interpolate({"w": torch.zeros(2)}, {"v": torch.zeros(2)}, 0.5)
    with pytest.raises(ValueError, match=r"w: shape \(2,\) in A but \(3,\) in B"):
        interpolate({"w": torch.zeros(2)}, {"w": torch.zeros(3)}, 0.5)
