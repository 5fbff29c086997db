"""Shared fixtures. Tests that need a system tool (ffprobe, Chromium) skip when it is missing, unless
HAPPYHORSE_REQUIRE_ALL=1 (set by CI and scripts/test.sh), which turns the skip into a failure."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"needs {' or '.join(names)} (Debian: apt-get install ffmpeg chromium)"
    if os.environ.get("HAPPYHORSE_REQUIRE_ALL") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def world_clip():
    from happyhorse.world import make_clip

    return make_clip(3)


def tiny_pipeline(seed: int = 0, **model):
    """A pipeline small enough to sample in milliseconds, with non-zero output heads; `model` overrides
    transformer config fields."""
    import torch

    from happyhorse import HappyHorsePipeline, SamplingConfig, build_components
    from happyhorse.model import TransformerConfig

    torch.manual_seed(seed)
    cfg = TransformerConfig(**{**dict(dim=32, depth=2, sandwich=1, heads=2, kv_heads=1, mlp_hidden=64), **model})
    parts = build_components(
        cfg,
        text_encoder="hash",
        defaults={"width": 32, "height": 32, "fps": 12.0, "seconds": 0.75},
        sampling=SamplingConfig(num_inference_steps=3),
    )
    pipe = HappyHorsePipeline(**vars(parts))
    for head in (pipe.transformer.video_out, pipe.transformer.audio_out):
        torch.nn.init.normal_(head.weight, std=0.05)
    return pipe


# a training run small enough for a test: a 64-wide, 2-layer transformer on 32x32, 9-frame world clips
TINY_RUN = {
    "model": "tiny",
    "model_overrides": {"dim": 64, "depth": 2, "heads": 2, "kv_heads": 1, "mlp_hidden": 128},
    "text_encoder": "hash",
    "width": 32,
    "height": 32,
    "num_frames": 9,
    "batch_size": 2,
    "num_workers": 0,
    "sample_every": 0,
}


@pytest.fixture
def pipe():
    return tiny_pipeline()
