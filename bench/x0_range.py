"""How far does the guided video x0 leave the pixel range [-1, 1] at each step of the sampling?

    python bench/x0_range.py --count 6

Guidance extrapolates (x0 = u + w (c - u) + ...), so the prediction the sampler steps toward may hold
values no pixel can take; the decoder clamps only the final sample. For each world test prompt (T2V,
TI2V, TA2V in turn), samples with the model's settings and records, per noise level, the share of the
video x0's values outside [-1, 1], their largest magnitude and the mean excess over the whole tensor
(what `clamp_x0` removes at that step). `--clamp` samples with `clamp_x0` (then no value lies outside:
the share and the excess read 0, the largest magnitude at most 1).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
from trajectory_objects import recording

from happyhorse.eval.suite import MODES, world_config
from happyhorse.generate import load_pipeline
from happyhorse.world import make_clip


def range_by_sigma(calls: list) -> list[dict]:
    """Per noise level (rounded to 3 places, highest first; a level walked twice by a restart is
    averaged over both): share of values outside [-1, 1], the largest magnitude, the mean excess."""
    by_sigma = defaultdict(list)
    for sigma, x0 in calls:
        size = x0.abs()
        excess = (size - 1).clamp(min=0)
        by_sigma[round(sigma, 3)].append(((size > 1).float().mean().item(), size.max().item(), excess.mean().item()))
    rows = []
    for sigma in sorted(by_sigma, reverse=True):
        share, largest, mean_excess = np.mean(by_sigma[sigma], axis=0)
        rows.append({"sigma": sigma, "share_outside": share, "largest": largest, "mean_excess": mean_excess})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--first", type=int, default=0, help="the first test prompt")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--clamp", action="store_true", help="sample with clamp_x0")
    parser.add_argument("--dtype", default=None, help="auto, float32 or bfloat16 (default: float32)")
    args = parser.parse_args()
    if args.first < 0 or args.count < 1:
        raise SystemExit(f"--first must be >= 0 and --count >= 1, got {args.first} and {args.count}")
    try:
        pipe = load_pipeline(args.model, None, args.dtype)
    except ValueError as exc:
        raise SystemExit(f"--dtype: {exc}") from None
    config = world_config(pipe)
    calls = recording(pipe)
    for i in range(args.first, args.first + args.count):
        truth, mode = make_clip(i, "test", config), MODES[i % len(MODES)]
        image = truth.frames[0] if mode == "TI2V" else None
        audio = (truth.audio, truth.sample_rate) if mode == "TA2V" else None
        pipe(truth.caption, image=image, audio=audio, seed=i, clamp_x0=args.clamp or None)
    print(f"{args.count} clips; per noise level, mean over the clips (and over a restart's second pass)")
    print("sigma  share outside [-1, 1]  largest |x0|  mean excess")
    for row in range_by_sigma(calls):
        print(f"{row['sigma']:5.3f}  {row['share_outside']:21.4f}  {row['largest']:12.2f}  {row['mean_excess']:11.5f}")


if __name__ == "__main__":
    main()
