"""bench/sampling_defaults.py: grid points parse, and --int8-linear quantizes what the grid loads."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from sampling_defaults import parse_point, quantize_linear_layers  # noqa: E402

import happyhorse.generate as generate  # noqa: E402
from tests.conftest import tiny_pipeline  # noqa: E402


def test_clamp_point_parses_and_bad_values_are_refused():
    point = parse_point("dpmpp_2m:7:5:clamp=1:restart=0.5-0.8")
    assert point["clamp_x0"] is True and point["restarts"] == 1
    assert parse_point("euler:8:1:clamp=0")["clamp_x0"] is False
    with pytest.raises(SystemExit, match=r"\[:clamp=0\|1\]"):
        parse_point("euler:8:1:clamp=yes")


def test_int8_linear_makes_loaded_transformers_quantized(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "load_pipeline", generate.load_pipeline)  # restored after the test
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "m")
    plain = generate.load_pipeline(tmp_path / "m")
    quantize_linear_layers()
    quantized = generate.load_pipeline(tmp_path / "m")
    kinds = {type(m) for m in quantized.transformer.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds and torch.nn.Linear not in kinds
    a, b = plain("a red ball", seed=0), quantized("a red ball", seed=0)
    assert a.frames.shape == b.frames.shape and not np.array_equal(a.frames, b.frames)
