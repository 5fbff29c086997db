"""Measure two transformers split by noise level (Wan 2.2's high- and low-noise experts) before any
pipeline carries them: the `--high` model directory denoises at sigma >= BOUNDARY, the `--low` one
(default: the embedded default model's transformer) below it, each with its own weights and the high
model's guide, scheduler and codecs. The question it answers: does a fine-tune's gain live in the steps
that set a clip's layout, and its cost in those that draw the details, so that the two could be kept apart?

    G=dpmpp_2m:7:5:audio=3:audio_auto=1:auto=3:corr=0.2:restart=0.5-0.8:auto_interval=0.5-1
    python bench/noise_level_experts.py --high /tmp/sc16 --boundary 0.5 --count 120 --grid $G --json ex.json

Every other argument is `bench/sampling_defaults.py`'s (its `--model` is `--high`), and so is the JSON, so
`bench/compare_points.py` pairs its rows with a grid's. The switch wraps the transformer rather than
adding a pipeline option, since the option is only worth building if this measures a gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import happyhorse.generate as generate

sys.path.insert(0, str(Path(__file__).parent))
import sampling_defaults  # noqa: E402


class NoiseLevelExperts(nn.Module):
    """Calls `high` for a forward whose noisiest token is at sigma >= boundary, `low` otherwise (given
    no self-conditioning estimate unless it reads one). Reads as `high` to the pipeline (its config)."""

    def __init__(self, high: nn.Module, low: nn.Module, boundary: float):
        super().__init__()
        self.high, self.low, self.boundary, self.cfg = high, low, boundary, high.cfg
        self.calls = {"high": 0, "low": 0}

    @property
    def blocks(self):
        return self.high.blocks

    def forward(self, video, audio, text, text_mask, positions, video_clean, audio_clean, sigma, **kwargs):
        inputs = (video, audio, text, text_mask, positions, video_clean, audio_clean, sigma)
        if float(sigma.max()) >= self.boundary:
            self.calls["high"] += 1
            return self.high(*inputs, **kwargs)
        self.calls["low"] += 1
        if not self.low.cfg.self_conditioning:
            kwargs.pop("self_condition", None)
        return self.low(*inputs, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--high", type=Path, required=True, help="model directory for sigma >= boundary")
    parser.add_argument("--low", type=Path, default=None, help="model directory below it (default: the embedded)")
    parser.add_argument("--boundary", type=float, required=True, help="the noise level where the low model takes over")
    args, rest = parser.parse_known_args()
    if not 0 < args.boundary <= 1:
        raise SystemExit(f"--boundary must be in (0, 1], got {args.boundary}")
    load = generate.load_pipeline

    def load_experts(model=None, device=None, dtype=None):
        pipe = load(args.high, device, dtype)
        low = load(args.low, device, dtype).transformer
        pipe.transformer = NoiseLevelExperts(pipe.transformer, low, args.boundary)
        return pipe

    generate.load_pipeline = load_experts  # evaluate_model loads through it
    sys.argv = [sys.argv[0], "--model", str(args.high), *rest]
    sampling_defaults.main()


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
