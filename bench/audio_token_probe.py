"""Do the model's sound tokens carry when an impact sounds? A linear probe on each block's states.

In TA2V the video ignores the given sound's timing (MODEL_CARD.md, "The video ignores a given
soundtrack"). Either the sound tokens never represent their onsets, or they do and the video tokens
do not read them. The first is plausible: a token is a raw 400-sample waveform patch. An impact's
energy is a quadratic feature of its samples, and a linear embedding of the patch sees only its phase.

So this fits a ridge probe from the states of the given (clean) sound tokens to whether an audible
impact starts within the token's 25 ms. It does so at the input and after each block. The probe is
fitted on the even clips and scored on the odd ones by AUC (0.5: no information, 1: perfect). Two
references come with it:
- the same probe on the raw patch the model is fed;
- the patch's log energy alone, the quadratic feature written by hand.

The video is the clip's own, noised to `--sigma` by seeded noise, as in training's TA2V samples.

`--video-side` asks the next question: do the *video* tokens take the onsets from the sound tokens?
Each clip is given the sound of the next clip, whose onsets its picture knows nothing of. The probe
runs from each latent frame's video tokens (mean over its places) to whether that sound has an onset
within the latent frame's time. Whatever it finds came from the sound, through attention. The
`input` row is the video tokens' embedding before any block, so it is chance by construction.

    python bench/audio_token_probe.py --count 90 [--model DIR] [--sigma 0.7] [--json out.json]
    python bench/audio_token_probe.py --count 90 --video-side
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from happyhorse.world import make_clip


def onset_targets(events: list[dict], num_tokens: int, patch: int) -> np.ndarray:
    """1 for each sound token [num_tokens] whose samples hold the start of an audible impact, else 0."""
    target = np.zeros(num_tokens, np.float32)
    for event in events:
        if not event.get("audible"):  # silent contacts carry no sample
            continue
        k = event["audio_sample"] // patch
        if 0 <= k < num_tokens:
            target[k] = 1.0
    return target


def latent_frame_targets(events: list[dict], grid_t: int, patch_t: int, sample_rate: int, fps: float) -> np.ndarray:
    """1 for each latent frame [grid_t] in whose frames an audible impact starts (frame 0 alone, then
    groups of patch_t frames, as the video codec packs them), else 0."""
    target = np.zeros(grid_t, np.float32)
    for event in events:
        if not event.get("audible"):
            continue
        frame = int(event["audio_sample"] / sample_rate * fps)
        k = 0 if frame == 0 else (frame - 1) // patch_t + 1
        if 0 <= k < grid_t:
            target[k] = 1.0
    return target


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties count
    half), from average ranks (Mann-Whitney U)."""
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"auc: needs both classes, got {positives} positives and {negatives} negatives")
    ranks = rankdata(scores)  # ties share their average rank
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def ridge_auc(train_x, train_y, test_x, test_y, strength: float = 1.0) -> float:
    """Fit ridge regression on standardised features (the penalty `strength` per sample), score AUC."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    a, b = np.c_[a, np.ones(len(a))], np.c_[b, np.ones(len(b))]
    penalty = strength * len(a) * np.eye(a.shape[1])
    penalty[-1, -1] = 0  # the intercept goes free
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ train_y)
    return auc(b @ weights, test_y)


@torch.no_grad()
def token_states(pipe, clip, sigma: float, seed: int, sound_clip=None) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    """For one world clip given as TA2V with the sound of `sound_clip` (default: its own): the sound
    tokens' features [Na, d] at the input (`patch`, `log_energy`) and after each block (`block i`) with
    their onset targets [Na], and the video tokens' features per latent frame [T, d] (`input`, `block i`:
    means over each latent frame's places) with that sound's onset targets per latent frame [T]."""
    sound_clip = clip if sound_clip is None else sound_clip
    from happyhorse.pipeline import sequence_positions

    vc, ac, model = pipe.video_codec, pipe.audio_codec, pipe.transformer
    frames = torch.from_numpy(clip.frames)[None]
    grid = vc.latent_shape(*frames.shape[1:4])
    video = vc.encode(frames).reshape(1, -1, vc.latent_dim)
    sound = ac.encode(torch.from_numpy(sound_clip.audio)[None])
    noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(seed))
    noisy = (1 - sigma) * video + sigma * noise
    text, text_mask = pipe.text_encoder.encode([clip.caption])
    nv, na = video.shape[1], sound.shape[1]
    positions = sequence_positions(grid, na, text.shape[1], vc, ac, clip.fps)
    states = {}
    hooks = [
        block.register_forward_hook(lambda m, args, out, i=i: states.__setitem__(f"block {i}", out[0]))
        for i, block in enumerate(model.blocks)
    ]
    try:
        model(
            noisy,
            sound,
            text,
            text_mask,
            positions,
            torch.zeros(1, nv, dtype=torch.bool),
            torch.ones(1, na, dtype=torch.bool),
            torch.cat([torch.full((1, nv), sigma), torch.zeros(1, na)], dim=1),
        )
    finally:
        for hook in hooks:
            hook.remove()
    patch = sound[0].numpy()
    features = {"patch": patch, "log_energy": np.log((patch**2).mean(1, keepdims=True) + 1e-8)}
    features.update({k: v[nv : nv + na].float().numpy() for k, v in states.items()})
    per_frame = lambda h: h[:nv].reshape(grid[0], grid[1] * grid[2], -1).mean(1).float().numpy()  # noqa: E731
    video_features = {"input": per_frame(model.video_in(noisy)[0])}
    video_features.update({k: per_frame(v) for k, v in states.items()})
    events = sound_clip.meta["events"]
    video_target = latent_frame_targets(events, grid[0], vc.patch_t, ac.sample_rate, clip.fps)
    return features, onset_targets(events, na, ac.patch), video_features, video_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--first", type=int, default=0, help="first test clip")
    parser.add_argument("--count", type=int, default=90, help="test clips (even ones fit the probe, odd ones score it)")
    parser.add_argument("--sigma", type=float, default=0.7, help="noise level of the video, in (0, 1]")
    parser.add_argument("--video-side", action="store_true", help="probe the video tokens, given another clip's sound")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.first < 0 or args.count < 4:
        raise SystemExit(f"--first must be >= 0 and --count >= 4, got {args.first} and {args.count}")
    if not 0 < args.sigma <= 1:
        raise SystemExit(f"--sigma must be in (0, 1], got {args.sigma}")

    from happyhorse.eval.suite import world_config
    from happyhorse.generate import load_pipeline

    pipe = load_pipeline(args.model)
    config = world_config(pipe)
    split = {0: ([], []), 1: ([], [])}  # clip parity -> (features per clip, targets per clip)
    for i in range(args.first, args.first + args.count):
        clip = make_clip(i, "test", config)
        other = make_clip(i + 1, "test", config) if args.video_side else None
        sound_side, sound_target, video_side, video_target = token_states(pipe, clip, args.sigma, i, other)
        features, target = (video_side, video_target) if args.video_side else (sound_side, sound_target)
        split[i % 2][0].append(features)
        split[i % 2][1].append(target)
    train_y, test_y = np.concatenate(split[0][1]), np.concatenate(split[1][1])
    unit = "latent frames" if args.video_side else "sound tokens"
    result = {"positives": int(train_y.sum() + test_y.sum()), "samples": len(train_y) + len(test_y), "auc": {}}
    for name in split[0][0][0]:
        train_x = np.concatenate([f[name] for f in split[0][0]])
        test_x = np.concatenate([f[name] for f in split[1][0]])
        result["auc"][name] = ridge_auc(train_x, train_y, test_x, test_y)
        print(f"{name:12s} AUC {result['auc'][name]:.3f}", flush=True)
    print(f"{result['positives']} of {result['samples']} {unit} hold an onset")
    if args.json:
        args.json.write_text(
            json.dumps(
                {**result, "sigma": args.sigma, "first": args.first, "count": args.count, "video_side": args.video_side}
            )
        )


if __name__ == "__main__":
    main()
