"""bench/loss_on_objects.py and bench/codec_ceiling.py --rank: the two checks of what limits drawing."""

import importlib.util
from pathlib import Path

import pytest
import torch

from happyhorse.codecs.video import PatchVideoCodec
from happyhorse.world import WorldConfig, make_clip

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loss_shares_split_the_error_by_object_tokens_within_each_noise_band():
    shares = load("loss_on_objects").loss_shares
    errors = torch.tensor([[3.0, 1.0, 5.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    covered = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.2, 0.0005]])  # the last is under TOUCHED
    trained = torch.tensor([[True, True, False, True], [True, True, True, True]])  # 5.0 is a given token's
    out = shares(errors, covered, torch.tensor([0.2, 0.95]), trained)
    assert out["0-0.4"] == pytest.approx((0.75, 1 / 3, 3.0, 0.5))
    assert out["0.9-1"] == pytest.approx((0.25, 0.25, 1.0, 1.0))
    assert out["all"] == pytest.approx((0.5, 2 / 7, 2.0, 0.8))
    assert "0.4-0.7" not in out  # no sample there
    at_one = shares(errors, covered, torch.tensor([1.0, 1.0]), trained)["0.9-1"]
    assert at_one[1] == pytest.approx(2 / 7)  # sigma 1 counts


def test_principal_components_order_the_cells_directions_and_rebuild_them_whole():
    ceiling = load("codec_ceiling")
    cells, world = PatchVideoCodec(), WorldConfig(32, 32, 12.0, 5 / 12)
    mean, basis = ceiling.principal_components(cells, world, 3)
    assert basis.shape == (768, 768) and mean.shape == (768,)
    torch.testing.assert_close(basis.T @ basis, torch.eye(768, dtype=basis.dtype), atol=1e-8, rtol=0)
    z = cells.encode(torch.from_numpy(make_clip(0, "train", world, ground_truth=False).frames)[None])
    z = z.reshape(-1, 768).double() - mean
    spread = (z @ basis).var(0)
    assert spread[:8].sum() > spread[8:].sum()  # a clip's cells lie mostly along the first directions
    torch.testing.assert_close(z @ basis @ basis.T, z, atol=1e-8, rtol=0)  # all of them: nothing lost
