"""Can the model pick, among K TA2V samples of one prompt, the one whose impacts fit the given sound?

The TA2V video ignores the given sound's timing (MODEL_CARD.md, "The video ignores a given
soundtrack"), but samples from different seeds place their impacts differently, so the best of K
would be in sync more often than one. This draws K samples of each TA2V test prompt and picks one
by the model's own judgement of how well the video explains the sound, never by the evaluation's
tracker:
- `onset`: the model predicts the sound for the candidate video (video noised to 0.3, sound from
  pure noise); the score is the correlation of that prediction's onset strength (rises of per-token
  log energy) with the given sound's;
- `error`: the model's denoising error on the given sound, noised to 0.3 and 0.5, given the
  candidate video (lower is better: a diffusion classifier).

It prints the pooled within-one-frame sync of the first seed (what the pipeline makes today), of all
K, of the pick, and of the best of K by the tracker (the ceiling a perfect judge would reach).

    python bench/ta2v_best_of_k.py --first 120 --count 90 --k 4 [--score onset|error] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from audio_timing_signal import impact_times, within_one_frame

from happyhorse.eval.suite import MODES
from happyhorse.pipeline import sequence_positions
from happyhorse.world import make_clip


@torch.no_grad()
def predicted_sound(
    pipe, frames: np.ndarray, caption: str, sound: np.ndarray, video_sigma: float, sound_sigma: float, seed: int
):
    """The model's x0 prediction of the sound tokens [Na, Ca] for the video frames [T, H, W, 3] noised
    to video_sigma and `sound` [C, N] noised to sound_sigma (1: pure noise), and the given sound's tokens."""
    vc, ac, model = pipe.video_codec, pipe.audio_codec, pipe.transformer
    f = torch.from_numpy(frames)[None]
    grid = vc.latent_shape(*f.shape[1:4])
    video = vc.encode(f).reshape(1, -1, vc.latent_dim)
    given = ac.encode(torch.from_numpy(sound)[None])
    g = torch.Generator().manual_seed(seed)
    noisy_video = (1 - video_sigma) * video + video_sigma * torch.randn(video.shape, generator=g)
    noisy_sound = (1 - sound_sigma) * given + sound_sigma * torch.randn(given.shape, generator=g)
    text, mask = pipe.text_encoder.encode([caption])
    nv, na = video.shape[1], given.shape[1]
    out = model(
        noisy_video,
        noisy_sound,
        text,
        mask,
        sequence_positions(grid, na, text.shape[1], vc, ac, pipe.defaults["fps"]),
        torch.zeros(1, nv, dtype=torch.bool),
        torch.zeros(1, na, dtype=torch.bool),
        torch.cat([torch.full((1, nv), video_sigma), torch.full((1, na), sound_sigma)], 1),
    )
    return out.audio[0], given[0]


def onset_strength(tokens: torch.Tensor) -> np.ndarray:
    """Rises of per-token log energy [Na]: where a sound starts."""
    energy = np.log((tokens.float().numpy() ** 2).mean(-1) + 1e-6)
    return np.maximum(np.diff(energy, prepend=energy[0]), 0)


def score(pipe, frames, caption, sound, how: str, seed: int) -> float:
    """Higher: the model judges that the video explains the sound better."""
    if how == "onset":
        predicted, given = predicted_sound(pipe, frames, caption, sound, 0.3, 1.0, seed)
        a, b = onset_strength(predicted), onset_strength(given)
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    if how == "error":
        errors = []
        for k, sigma in enumerate((0.3, 0.5)):
            predicted, given = predicted_sound(pipe, frames, caption, sound, 0.0, sigma, seed * 10 + k)
            errors.append(float((predicted - given).pow(2).mean()))
        return -float(np.mean(errors))
    raise ValueError(f"score must be onset or error, got {how!r}")


def summarise(rows: list[dict]) -> dict:
    """Pooled within-one-frame sync of the first candidate, all, the pick and the tracker's best."""

    def pooled(choose) -> float | None:
        hits = [h for r in rows for h in r["candidates"][choose(r)]["hits"]]
        return float(np.mean(hits)) if hits else None

    def share(c: dict) -> float:
        return float(np.mean(c["hits"])) if c["hits"] else -1.0

    every = [h for r in rows for c in r["candidates"] for h in c["hits"]]
    return {
        "prompts": len(rows),
        "first_seed": pooled(lambda r: 0),
        "all": float(np.mean(every)) if every else None,
        "picked": pooled(lambda r: int(np.argmax([c["score"] for c in r["candidates"]]))),
        "best_by_tracker": pooled(lambda r: int(np.argmax([share(c) for c in r["candidates"]]))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--first", type=int, default=120, help="first test prompt")
    parser.add_argument("--count", type=int, default=90, help="test prompts (a third of them are TA2V)")
    parser.add_argument("--k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--score", choices=("onset", "error"), default="onset")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.first < 0 or args.count < 1 or args.k < 2:
        raise SystemExit(f"--first >= 0, --count >= 1 and --k >= 2, got {args.first}, {args.count}, {args.k}")

    from happyhorse.eval.suite import world_config
    from happyhorse.generate import load_pipeline

    pipe = load_pipeline(args.model)
    config = world_config(pipe)
    rows = []
    for i in range(args.first, args.first + args.count):
        if MODES[i % len(MODES)] != "TA2V":
            continue
        truth = make_clip(i, "test", config)
        facts, sr, fps = truth.meta["facts"], truth.sample_rate, truth.fps
        candidates = []
        for k in range(args.k):
            frames = pipe(truth.caption, audio=(truth.audio, sr), seed=i + 100_000 * k).frames[0]
            hits = within_one_frame(impact_times(frames, facts, fps), truth.audio, sr, fps)
            candidates.append({"score": score(pipe, frames, truth.caption, truth.audio, args.score, i), "hits": hits})
        rows.append({"prompt": i, "candidates": candidates})
        print(i, json.dumps(summarise(rows)), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"summary": summarise(rows), "rows": rows, "score": args.score}, indent=1))


if __name__ == "__main__":
    main()
