"""How much does the model's video prediction depend on the given sound's timing, by noise level?

`bench/audio_timing_signal.py` asks it end to end (7 min): does delaying the sound move the sampled
video's impacts? This asks it of one forward pass, in a minute, as the contrastive timing term of
training does (TrainConfig.audio_contrast_weight): each test clip's video, noised to sigma, is
predicted from its own sound and from the same scene's sound with every impact moved by `--shift`
seconds (either way, alternating), and the two video errors are compared. A model that reads the
sound's timing predicts the video better from its own sound: its relative gap (e_moved - e_own) /
e_own is positive and `own_better` (the share of clips with a positive gap) above 0.5. One deaf to
the timing gives gaps near 0 and a share near 0.5.

    python bench/audio_contrast_gap.py --count 64 [--model DIR] [--sigmas 0.5 0.85 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from happyhorse.diffusion import predicted_x0
from happyhorse.pipeline import sequence_positions
from happyhorse.world import make_clip


@torch.no_grad()
def video_errors(pipe, clips, sounds: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Per clip [B], the mean squared error of the model's x0 prediction of its video tokens, noised
    to `sigma` by seeded noise, given `sounds` [B, C, N] as the clean (TA2V) soundtrack."""
    vc, ac, model = pipe.video_codec, pipe.audio_codec, pipe.transformer
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    b, grid = len(clips), vc.latent_shape(*frames.shape[1:4])
    video = vc.encode(frames).reshape(b, -1, vc.latent_dim)
    sound = ac.encode(torch.from_numpy(sounds))
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(seed))
    noisy = (1 - sigma) * video + sigma * noise
    text, text_mask = pipe.text_encoder.encode([c.caption for c in clips])
    nv, na = video.shape[1], sound.shape[1]
    out = model(
        noisy,
        sound,
        text,
        text_mask,
        sequence_positions(grid, na, text.shape[1], vc, ac, clips[0].fps),
        torch.zeros(b, nv, dtype=torch.bool),
        torch.ones(b, na, dtype=torch.bool),
        torch.cat([torch.full((b, nv), sigma), torch.zeros(b, na)], dim=1),
    )
    x0 = predicted_x0(out.video.float(), noisy, torch.tensor(sigma), model.cfg.prediction)
    return (x0 - video).pow(2).mean((1, 2)).numpy()


def contrast_gaps(pipe, config, first: int, count: int, shift_s: float, sigma: float) -> np.ndarray:
    """Relative gaps (e_moved - e_own) / e_own [count] of test clips first.. at one noise level; the
    impacts move by +shift_s in even clips and -shift_s in odd ones."""
    clips = [
        make_clip(i, "test", config, ground_truth=False, sound_shift_s=shift_s if i % 2 == 0 else -shift_s)
        for i in range(first, first + count)
    ]
    own = video_errors(pipe, clips, np.stack([c.audio for c in clips]), sigma, first)
    moved = video_errors(pipe, clips, np.stack([c.meta["shifted_audio"] for c in clips]), sigma, first)
    return (moved - own) / np.maximum(own, 1e-12)


def summarise(gaps: np.ndarray) -> dict:
    return {
        "own_better": float(np.mean(gaps > 0)),
        "mean_gap": float(gaps.mean()),
        "median_gap": float(np.median(gaps)),
        "clips": int(gaps.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--first", type=int, default=0, help="first test clip")
    parser.add_argument("--count", type=int, default=64, help="test clips")
    parser.add_argument("--shift", type=float, default=0.25, help="how far the impacts move, seconds")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.7, 0.85, 0.93, 1.0])
    parser.add_argument("--batch", type=int, default=16, help="clips per forward pass")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.first < 0 or args.count < 2:
        raise SystemExit(f"--first must be >= 0 and --count >= 2, got {args.first} and {args.count}")
    if not 0 < args.shift <= 1:
        raise SystemExit(f"--shift must be in (0, 1] seconds, got {args.shift}")
    if not all(0 < s <= 1 for s in args.sigmas):
        raise SystemExit(f"--sigmas must be in (0, 1], got {args.sigmas}")
    if args.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")

    from happyhorse.eval.suite import world_config
    from happyhorse.generate import load_pipeline

    pipe = load_pipeline(args.model)
    config = world_config(pipe)
    result = {}
    for sigma in args.sigmas:
        gaps = np.concatenate(
            [
                contrast_gaps(pipe, config, start, min(args.batch, args.first + args.count - start), args.shift, sigma)
                for start in range(args.first, args.first + args.count, args.batch)
            ]
        )
        result[f"{sigma:g}"] = summarise(gaps)
        r = result[f"{sigma:g}"]
        print(
            f"sigma {sigma:g}: own sound better in {r['own_better']:.3f} of {r['clips']} clips, "
            f"relative gap mean {r['mean_gap']:+.5f} median {r['median_gap']:+.5f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(
            json.dumps({"by_sigma": result, "first": args.first, "count": args.count, "shift_s": args.shift}, indent=1)
        )


if __name__ == "__main__":
    main()
