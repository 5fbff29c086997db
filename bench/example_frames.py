"""Example frames of a model beside the world's ground truth, for a model card.

    python bench/example_frames.py --out docs/default_model_frames.png [--model DIR] [--count 4]

For world test prompts k = 0..count-1 (mode T2V, TI2V, TA2V in turn, as `happyhorse eval --model`),
one row of every third generated frame, then the same prompt's ground-truth row beneath it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from happyhorse.generate import load_pipeline
from happyhorse.world import WorldConfig, make_clip

MODES = ("T2V", "TI2V", "TA2V")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--every", type=int, default=3, help="show every N-th frame")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    d = pipe.defaults
    frames = pipe.video_codec.num_frames(round(d["seconds"] * d["fps"]))
    world = WorldConfig(d["width"], d["height"], d["fps"], frames / d["fps"], pipe.audio_codec.sample_rate)
    rows, labels = [], []
    for k in range(args.count):
        truth = make_clip(k, "test", world)
        mode = MODES[k % len(MODES)]
        out = pipe(
            truth.caption,
            image=truth.frames[0] if mode == "TI2V" else None,
            audio=(truth.audio, truth.sample_rate) if mode == "TA2V" else None,
            seed=k,
        )
        rows += [
            np.concatenate(list(out.frames[0][:: args.every]), 1),
            np.concatenate(list(truth.frames[:: args.every]), 1),
        ]
        labels += [f"{k} {mode}: {truth.caption}", "   ground truth"]
    width = max(r.shape[1] for r in rows) * args.scale
    band = 14
    canvas = Image.new("RGB", (width, sum(r.shape[0] * args.scale + band for r in rows)), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    for row, label in zip(rows, labels, strict=True):
        draw.text((2, y + 1), label[: width // 6], fill="black")
        image = Image.fromarray(row).resize((row.shape[1] * args.scale, row.shape[0] * args.scale), Image.NEAREST)
        canvas.paste(image, (0, y + band))
        y += band + image.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
