"""Does the model's prediction move with the prompt's "left" or "right"?

Contrastive guidance away from the direction-swapped prompt (MODEL_CARD.md) did not raise T2V
direction accuracy; this asks why, in the model's own first step. For world test captions that name
one horizontal direction ("to the left" or "to the right", never both), the conditional x0 the model
predicts at each step of its own default sampling of the caption (T2V) is compared with its x0
for the same caption with the direction swapped, from the same x_t (at sigma 1, pure noise, that
is the mean clip it expects for each prompt):

- `ratio`: |c - n| / |c - u|, how much the swap changes the prediction against how much the whole
  prompt does (c, n: the caption and its swap; u: the empty prompt);
- `margin`: the horizontal drift of what moves in the predicted clip (pixels away from their median
  over time), in pixels per frame, for the caption minus for its swap, signed so that positive
  is the caption's direction. A model that reads the word gives positive margins; one that ignores
  it, margins near 0. Beside it, the true clip's drift, signed the same way (what a clip that moves
  the right way shows; the swap's margin of a model that reads the word would be up to twice it).

    python bench/direction_signal.py --count 60                      # the embedded default model
    python bench/direction_signal.py --model DIR --count 60 --json direction_signal.json
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from happyhorse import HappyHorsePipeline
from happyhorse.diffusion import get_schedule, sample
from happyhorse.pipeline import LEFT_RIGHT, initial_noise, sequence_positions, swap_words
from happyhorse.world import WorldConfig, make_clip


def direction_of(caption: str) -> int | None:
    """+1 for a caption that says only "right", -1 for only "left", None for neither or both."""
    words = set(re.findall(r"\b(left|right)\b", caption.lower()))
    return {frozenset({"right"}): 1, frozenset({"left"}): -1}.get(frozenset(words))


def drift(frames: np.ndarray) -> float:
    """Horizontal drift, pixels per frame, of what moves in frames [T, H, W, 3] (any range): the slope
    of a least-squares line through each frame's centroid of |pixel - that pixel's median over time|
    (the static background, plain or textured, drops out)."""
    f = frames.astype(np.float64)
    salience = np.abs(f - np.median(f, axis=0, keepdims=True)).sum(-1)  # [T, H, W]
    column = salience.sum(1)  # [T, W]
    keep = column.sum(1) > 1e-9  # a frame equal to the median everywhere has no centroid
    if keep.sum() < 2:
        return 0.0
    centre = (column[keep] * np.arange(f.shape[2])).sum(1) / column[keep].sum(1)
    return float(np.polyfit(np.arange(len(f))[keep], centre, 1)[0])


@torch.no_grad()
def trajectory_margins(pipe: HappyHorsePipeline, caption: str, swapped: str, sign: int, seed: int) -> list[dict]:
    """Along the model's own default sampling of the caption (T2V, its stored sampler and guidance),
    at each step's x_t: the conditional x0 for the caption (c) and for its swap (n), from the same x_t,
    and the empty prompt's (u): |c - n| / |c - u| and the signed drift margin of c over n."""
    sch, vc, ac, d = pipe.scheduler, pipe.video_codec, pipe.audio_codec, pipe.defaults
    frames = vc.num_frames(round(d["seconds"] * d["fps"]))
    grid = vc.latent_shape(frames, d["height"], d["width"])
    num_audio = ac.num_tokens(round(frames / d["fps"] * ac.sample_rate))
    text, mask = pipe.text_encoder.encode([caption, "", swapped])  # one call: one padding for all
    positions = sequence_positions(grid, num_audio, text.shape[1], vc, ac, d["fps"])
    gen = torch.Generator().manual_seed(seed)  # the pipeline's own draw: this is the seed's clip
    noise = initial_noise(1, grid, vc.latent_dim, num_audio, ac.latent_dim, sch.noise_correlation, gen)
    auto = (sch.autoguidance_scale, sch.audio_autoguidance_scale)
    default = pipe._denoiser(
        text[:2], mask[:2], positions, [None, None], True, sch.guidance_scale, sch.audio_guidance_scale,
        sch.guidance_interval, auto, sch.guide_skip_blocks, local=sch.guide_frame_local_blocks,
        auto_interval=sch.autoguidance_interval,
    )  # fmt: skip
    alone = [
        pipe._denoiser(text[k : k + 1], mask[k : k + 1], positions, [None, None], False, 1.0, 1.0) for k in range(3)
    ]
    decode = lambda x: vc.decode(x.reshape(1, *grid, -1)).numpy()[0]  # noqa: E731
    rows = []

    def denoise(xs, sigma):
        c, u, n = (f(xs, sigma)[0] for f in alone)
        margin = sign * (drift(decode(c)) - drift(decode(n)))
        rows.append({"sigma": float(sigma), "ratio": float((c - n).norm() / (c - u).norm()), "margin": margin})
        return default(xs, sigma)

    sample(denoise, noise, get_schedule(sch.num_inference_steps, sch.shift), sch.sampler, [None, None], gen)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--count", type=int, default=60, help="test prompts to look at (those with one direction)")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument(
        "--noise-correlation", type=float, default=None, help="override the model's stored noise_correlation"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = HappyHorsePipeline.from_pretrained(args.model)
    if args.noise_correlation is not None:
        try:
            pipe.scheduler = replace(pipe.scheduler, noise_correlation=args.noise_correlation)
        except ValueError as exc:
            parser.error(str(exc))
    d = pipe.defaults
    world = WorldConfig(d["width"], d["height"], d["fps"], d["seconds"], pipe.audio_codec.sample_rate, 1)
    rows = []
    for seed in range(args.first, args.first + args.count):
        clip = make_clip(seed, "test", world, ground_truth=False)
        caption = clip.caption
        sign = direction_of(caption)
        if sign is None:
            continue
        steps = trajectory_margins(pipe, caption, swap_words(caption, LEFT_RIGHT), sign, seed)
        truth = sign * drift(clip.frames)  # the same caption's true clip, signed the same way
        rows.append({"seed": seed, "caption": caption, "steps": steps, "truth_drift_px_per_frame": truth})
        print(
            f"{seed:4d} {'right' if sign > 0 else 'left ':5s} margins "
            + " ".join(f"{r['margin']:+.3f}" for r in steps),
            flush=True,
        )
    if not rows:
        raise SystemExit(f"no test prompt in {args.first}..{args.first + args.count - 1} names one direction")
    sigmas = [r["sigma"] for r in rows[0]["steps"]]
    margins = np.array([[r["margin"] for r in row["steps"]] for row in rows])  # [prompts, steps]
    ratios = np.array([[r["ratio"] for r in row["steps"]] for row in rows])
    se = margins.std(0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else np.full(len(sigmas), np.nan)
    summary = {
        "prompts": len(rows),
        "truth_drift_mean": float(np.mean([r["truth_drift_px_per_frame"] for r in rows])),
        "by_step": [
            {"sigma": s, "ratio_median": float(np.median(ratios[:, k])), "margin_mean": float(margins[:, k].mean()),
             "margin_se": float(se[k]), "margin_positive_share": float(np.mean(margins[:, k] > 0))}
            for k, s in enumerate(sigmas)
        ],
    }  # fmt: skip
    print(f"{len(rows)} prompts; the true clips' signed drift {summary['truth_drift_mean']:+.3f} px/frame")
    print("sigma   |c-n|/|c-u|   margin px/frame (1 s.e.)   positive")
    for r in summary["by_step"]:
        print(
            f"{r['sigma']:5.2f}   {r['ratio_median']:11.3f}   {r['margin_mean']:+.4f} ({r['margin_se']:.4f})"
            f"{'':10s}{r['margin_positive_share']:.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({**summary, "model": args.model or "embedded default", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
