"""When along the sampling do objects break into patches? The world metrics of every step's x0.

    python bench/trajectory_objects.py --first 120 --count 60 --modes T2V --json traj.json

For each world test prompt, samples with the model's default settings and keeps the guided x0
prediction the sampler steps toward at every noise level (the clip the model would give if it stopped
there), then scores each of these clips by the world metrics of the evaluation suite (tracking,
colour, shape, count, `object_permanence`, persistence = permanence >= 0.95, direction). The last
step's x0 is the sample (every sampler's last step, to sigma 0, lands on it). Frames are scored as
decoded, without the MP4 pass of `happyhorse eval`, so the last row is near the evaluation's figures,
not equal to them.

If permanence is already low in the first steps' x0s, the layout is decided broken at high noise
(more capacity or steps there); if it falls over the last steps, the low-noise steps break drawn
objects (guidance or the last updates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from happyhorse.eval.metrics import evaluate_clip
from happyhorse.eval.suite import MODES, world_config
from happyhorse.generate import load_pipeline
from happyhorse.world import make_clip

COLUMNS = (
    "colour_accuracy",
    "shape_accuracy",
    "count_accuracy",
    "object_permanence",
    "object_persistence_rate",
    "direction_accuracy",
)


def recording(pipe) -> list:
    """Wrap `pipe`'s denoiser so that every call's guided x0s are appended to the returned list as
    (sigma, video x0); the pipeline samples as before."""
    calls = []
    build = pipe._denoiser

    def wrapped(*args, **kwargs):
        denoise = build(*args, **kwargs)

        def recorded(xs, sigma):
            x0s = denoise(xs, sigma)
            calls.append((float(sigma), x0s[0].clone()))
            return x0s

        return recorded

    pipe._denoiser = wrapped
    return calls


def world_scores(frames: np.ndarray, fps: float, facts: dict) -> dict:
    """The world metrics of one clip's frames [T, H, W, 3] uint8 (None where a metric does not apply)."""
    metrics, _ = evaluate_clip(frames, fps, None, None, facts, suite="world")
    scores = {name: metrics[name]["value"] for name in COLUMNS if name in metrics}
    if "object_permanence" in scores:
        scores["object_persistence_rate"] = float(scores["object_permanence"] >= 0.95)
    return scores


def trajectory(pipe, index: int, config, mode: str) -> list[dict]:
    """Scores of every step's x0 (the last one is the sample) for test prompt `index` in `mode`."""
    truth = make_clip(index, "test", config)
    calls = recording(pipe)
    image = truth.frames[0] if mode == "TI2V" else None
    audio = (truth.audio, truth.sample_rate) if mode == "TA2V" else None
    out = pipe(truth.caption, image=image, audio=audio, seed=index)
    grid = pipe.video_codec.latent_shape(out.frames.shape[1], out.frames.shape[2], out.frames.shape[3])
    rows = []
    for step, (sigma, x0) in enumerate(calls):
        frames = pipe.video_codec.decode(x0.reshape(1, *grid, -1)).numpy()[0]
        if image is not None:
            frames[0] = image  # as the pipeline keeps the given frame
        rows.append({"step": step, "sigma": sigma, **world_scores(frames, out.fps, truth.meta["facts"])})
    return rows


def summarise(per_clip: list[list[dict]]) -> list[dict]:
    """Mean of each metric at each step over the clips that have it."""
    table = []
    for step in range(len(per_clip[0])):
        rows = [clip[step] for clip in per_clip]
        entry = {"step": step, "sigma": rows[0]["sigma"]}
        for name in COLUMNS:
            values = [r[name] for r in rows if r.get(name) is not None]
            entry[name] = float(np.mean(values)) if values else None
        table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--first", type=int, default=120, help="the first test prompt")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["T2V"], help="only these modes' prompts")
    parser.add_argument("--dtype", default=None, help="auto, float32 or bfloat16 (default: float32)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.first < 0 or args.count < 1:
        raise SystemExit(f"--first must be >= 0 and --count >= 1, got {args.first} and {args.count}")
    try:
        pipe = load_pipeline(args.model, None, args.dtype)
    except ValueError as exc:
        raise SystemExit(f"--dtype: {exc}") from None
    config = world_config(pipe)
    per_clip = [
        trajectory(pipe, i, config, MODES[i % len(MODES)])
        for i in range(args.first, args.first + args.count)
        if MODES[i % len(MODES)] in args.modes
    ]
    if not per_clip:
        raise SystemExit(f"--modes: no prompt of {args.modes} among {args.first} .. {args.first + args.count - 1}")
    table = summarise(per_clip)
    print(f"{len(per_clip)} clips; step 0 is the first x0 (pure noise in), the last row's x0 is the sample")
    print("step  sigma  " + "  ".join(f"{n[:12]:>12s}" for n in COLUMNS))
    for row in table:
        cells = "  ".join(f"{row[n]:12.3f}" if row[n] is not None else f"{'-':>12s}" for n in COLUMNS)
        print(f"{row['step']:4d}  {row['sigma']:5.2f}  {cells}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "table": table}, indent=1))


if __name__ == "__main__":
    main()
