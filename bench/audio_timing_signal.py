"""Does the video follow the given soundtrack's timing (TA2V)?

In TA2V the video's impacts land within one frame of the given sound's onsets for about half of them,
against 0.8 for the sound the model makes itself in T2V (MODEL_CARD.md). This asks whether the model
reads *when* the sound happens at all: each TA2V test prompt is generated twice from the same seed,
once with its own soundtrack and once with that soundtrack delayed by `--delay-frames` frames
(silence in front, the tail cut), and each video's impacts (the evaluation suite's tracked impacts) are
matched against both soundtracks' onsets. A model that follows the sound gives the delayed run's
impacts a match with the delayed sound as good as the own run's with its own, and a shift of the
impacts' median time by the delay; one that ignores it keeps its impacts where they were.
`mean_frame_change` is how much the delay moves the picture at all (mean absolute pixel difference of
the two videos, 0-255). Its shares come from the raw frames and sound, without the MP4 and WAV round
trip of `happyhorse eval`, so they differ from the eval's TA2V sync (0.52 here against 0.49 in the
evaluation of MODEL_CARD.md, whose MP4 encoding alone moves it by a few hundredths).

    python bench/audio_timing_signal.py --first 120 --count 240 --json audio_timing.json
    python bench/audio_timing_signal.py --model DIR --count 60
    python bench/audio_timing_signal.py --noised-sound --count 90   # the sound as a co-generated one
    python bench/audio_timing_signal.py --reconstruction 100 --count 90   # reconstruction guidance
    python bench/audio_timing_signal.py --reconstruction 30 --flat --count 90   # ... at every level alike

`--noised-sound` gives the soundtrack to the model the way a generated one looks mid-sampling: noised to
each step's level by the sample's own noise and marked as noisy, instead of clean (replacement
conditioning, as in SDEdit-style inpainting). It asks whether the video reads a sound it treats as
its own partner, where it ignores one it is handed.

`--reconstruction W` adds reconstruction guidance toward the sound (Ho et al. 2022, "Video diffusion
models", section 3.1): at each step the video's prediction moves by -W (1 - s) / 2 times the gradient,
with respect to the noisy video, of the squared error between the given sound's latents and the model's
own prediction of them (from the sound noised to the step's level). It uses the one path the model is
known to have, the sound reading the video (T2V sync 0.81), to push the video toward a picture whose
sound would be the given one. One more forward and backward pass a step.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from happyhorse.eval import sync
from happyhorse.eval.suite import MODES
from happyhorse.eval.tracking import track_colours
from happyhorse.eval.world import world_metrics
from happyhorse.world import WorldConfig, make_clip


@contextlib.contextmanager
def noised_sound(pipe):
    """While open, `pipe` gives a given soundtrack to the model noised to each step's level by the sample's
    own noise (x_t = (1 - s) z + s eps, not clean): the pipeline's sampler and denoiser are wrapped,
    the given sound still replaces the output's. The sampler is the pipeline module's, so every
    pipeline in the process samples this way while it is open (a diagnostic, not a feature)."""
    from happyhorse import pipeline

    sample, denoiser = pipeline.sample, pipe._denoiser

    def sample_with_noised_sound(denoise, noise, sigmas, method, clean, generator, callback, *rest):
        if clean[1] is None:
            return sample(denoise, noise, sigmas, method, clean, generator, callback, *rest)
        mask, z = clean[1]

        def noised(xs, s):
            return denoise([xs[0], torch.where(mask[..., None], (1 - s) * z + s * noise[1], xs[1])], s)

        return sample(noised, noise, sigmas, method, [clean[0], None], generator, callback, *rest)

    pipeline.sample = sample_with_noised_sound
    pipe._denoiser = lambda text, text_mask, positions, clean, *a, **k: denoiser(
        text, text_mask, positions, [clean[0], None], *a, **k
    )
    try:
        yield
    finally:
        pipeline.sample = sample
        del pipe._denoiser  # the class's method again


@contextlib.contextmanager
def reconstruction_guidance(pipe, scale: float, flat: bool = False):
    """While open, `pipe`'s TA2V sampling adds reconstruction guidance toward the given sound at weight
    `scale` (module docstring); the sampler is wrapped as by `noised_sound`, and its own noise is the
    sound's noise in the gradient pass. `flat`: the step is -scale / 2 times the gradient at every noise
    level, sigma 1 included, instead of Ho et al.'s -scale (1 - s) / 2, which is small at the high-noise
    steps where a motion's path is laid out. A diagnostic, not a feature."""
    from happyhorse import pipeline
    from happyhorse.diffusion import predicted_x0

    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"reconstruction scale: must be a finite number > 0, got {scale}")
    sample, denoiser = pipeline.sample, pipe._denoiser
    audio_noise = []

    def sample_keeping_noise(denoise, noise, sigmas, method, clean, generator, callback, *rest):
        audio_noise[:] = [noise[1]]
        return sample(denoise, noise, sigmas, method, clean, generator, callback, *rest)

    def guided_denoiser(text, text_mask, positions, clean, *args, **kwargs):
        denoise = denoiser(text, text_mask, positions, clean, *args, **kwargs)
        if clean[1] is None:
            return denoise
        given, z = clean[1]
        prediction = pipe.transformer.cfg.prediction

        def guided(xs, s):
            x0v, x0a = denoise(xs, s)
            weight = scale / 2 if flat else scale * (1 - s) / 2
            if weight == 0:  # Ho et al.'s weight is zero at pure noise: no pass to make
                return [x0v, x0a]
            b = xs[0].shape[0]
            sound = torch.where(given[..., None], (1 - s) * z + s * audio_noise[0], xs[1])
            video_clean = clean[0][0] if clean[0] is not None else torch.zeros(xs[0].shape[:2], dtype=torch.bool)
            device, dtype = pipe.device, pipe.dtype
            with torch.enable_grad():
                video = xs[0].detach().to(device, dtype).requires_grad_(True)
                tokens = torch.cat([(~video_clean).float(), torch.ones(sound.shape[:2])], dim=1) * s
                out = pipe.transformer(
                    video,
                    sound.to(device, dtype),
                    text[:b].to(device, dtype),  # the prompts' rows (with guidance, the empty prompts follow)
                    text_mask[:b].to(device),
                    positions,
                    video_clean.to(device),
                    torch.zeros(sound.shape[:2], dtype=torch.bool, device=device),  # the sound shown as noisy
                    tokens.to(device, dtype),
                )
                own = predicted_x0(out.audio.float().cpu(), sound, torch.tensor(s), prediction)
                (grad,) = torch.autograd.grad((((own - z) ** 2) * given[..., None]).sum(), video)
            return [x0v - weight * grad.float().cpu(), x0a]

        return guided

    pipeline.sample = sample_keeping_noise
    pipe._denoiser = guided_denoiser
    try:
        yield
    finally:
        pipeline.sample = sample
        del pipe._denoiser


def impact_times(frames: np.ndarray, facts: dict, fps: float) -> list[float]:
    """Seconds of the visual impacts the evaluation suite finds in frames [T, H, W, 3] (uint8)."""
    h, w = frames.shape[1:3]
    return list(world_metrics(track_colours(frames), facts, fps, h, w)["_impact_times"])


def within_one_frame(impacts: list[float], audio: np.ndarray, sample_rate: int, fps: float) -> list[bool]:
    """For each impact, whether the soundtrack [C, N] has an onset within one frame of it."""
    offsets = sync.impact_offsets_ms(impacts, sync.audio_onsets(audio, sample_rate))
    return [abs(o) <= 1000 / fps for o in offsets]


def delayed(audio: np.ndarray, samples: int) -> np.ndarray:
    """The soundtrack [C, N] `samples` later: silence in front, the same length."""
    if not 0 <= samples <= audio.shape[1]:
        raise ValueError(f"delay: 0 to {audio.shape[1]} samples (the sound's length), got {samples}")
    out = np.zeros_like(audio)
    out[:, samples:] = audio[:, : audio.shape[1] - samples]
    return out


def summarise(rows: list[dict], delay_s: float) -> dict:
    """Pooled within-one-frame shares of each video against each soundtrack, and the impacts' shift."""

    def share(key: str) -> float | None:
        hits = [h for r in rows for h in r[key]]
        return float(np.mean(hits)) if hits else None

    shifts = [
        float(np.median(r["delayed_impacts"]) - np.median(r["own_impacts"]))
        for r in rows
        if r["own_impacts"] and r["delayed_impacts"]
    ]
    return {
        "clips": len(rows),
        "own_video_vs_own_sound": share("own_vs_own"),
        "own_video_vs_delayed_sound": share("own_vs_delayed"),
        "delayed_video_vs_delayed_sound": share("delayed_vs_delayed"),
        "delayed_video_vs_own_sound": share("delayed_vs_own"),
        "truth_vs_own_sound": share("truth_vs_own"),
        "truth_vs_delayed_sound": share("truth_vs_delayed"),
        "median_impact_shift_s": float(np.median(shifts)) if shifts else None,
        "mean_impact_shift_s": float(np.mean(shifts)) if shifts else None,
        "shift_clips": len(shifts),
        "mean_frame_change": float(np.mean([r["frame_change"] for r in rows])) if rows else None,
        "delay_s": delay_s,
    }


def probe(pipe, config: WorldConfig, prompts, delay_s: float) -> list[dict]:
    """One row per TA2V prompt: each run's impacts, and whether each impact has an onset of each sound
    within one frame."""
    samples = round(delay_s * config.sample_rate)
    rows = []
    for i in prompts:
        if MODES[i % len(MODES)] != "TA2V":
            continue
        truth = make_clip(i, "test", config)
        facts, sr, fps = truth.meta["facts"], truth.sample_rate, truth.fps
        delayed_sound = delayed(truth.audio, samples)
        own_run = pipe(truth.caption, audio=(truth.audio, sr), seed=i)
        delayed_run = pipe(truth.caption, audio=(delayed_sound, sr), seed=i)
        own_imp = impact_times(own_run.frames[0], facts, fps)
        late_imp = impact_times(delayed_run.frames[0], facts, fps)
        true_imp = impact_times(truth.frames, facts, fps)
        rows.append(
            {
                "prompt": i,
                "frame_change": float(np.abs(own_run.frames[0].astype(np.float32) - delayed_run.frames[0]).mean()),
                "own_impacts": own_imp,
                "delayed_impacts": late_imp,
                "own_vs_own": within_one_frame(own_imp, truth.audio, sr, fps),
                "own_vs_delayed": within_one_frame(own_imp, delayed_sound, sr, fps),
                "delayed_vs_delayed": within_one_frame(late_imp, delayed_sound, sr, fps),
                "delayed_vs_own": within_one_frame(late_imp, truth.audio, sr, fps),
                "truth_vs_own": within_one_frame(true_imp, truth.audio, sr, fps),
                "truth_vs_delayed": within_one_frame(true_imp, delayed_sound, sr, fps),
            }
        )
        print(i, json.dumps({k: v for k, v in summarise(rows, delay_s).items() if k != "delay_s"}), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--first", type=int, default=0, help="first test prompt")
    parser.add_argument("--count", type=int, default=60, help="test prompts to scan (a third are TA2V)")
    parser.add_argument("--delay-frames", type=int, default=3, help="how many frames later the delayed sound is")
    parser.add_argument("--json", type=Path, default=None, help="write per-clip rows and the summary here")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--noised-sound", action="store_true", help="give the sound noised to each step's level")
    how.add_argument(
        "--reconstruction", type=float, default=None, help="reconstruction guidance toward the sound at this weight"
    )
    parser.add_argument(
        "--flat", action="store_true", help="with --reconstruction: the same weight at every noise level, not (1 - s)"
    )
    args = parser.parse_args()
    if args.count < 1 or args.first < 0:
        raise SystemExit(f"--first must be >= 0 and --count >= 1, got {args.first} and {args.count}")
    if args.delay_frames < 1:
        raise SystemExit(f"--delay-frames must be >= 1, got {args.delay_frames}")
    if args.reconstruction is not None and not (math.isfinite(args.reconstruction) and args.reconstruction > 0):
        raise SystemExit(f"--reconstruction must be a finite number > 0, got {args.reconstruction}")
    if args.flat and args.reconstruction is None:
        raise SystemExit("--flat weights --reconstruction; give --reconstruction W too")

    from happyhorse.eval.suite import world_config
    from happyhorse.generate import load_pipeline

    pipe = load_pipeline(args.model)
    config = world_config(pipe)
    frames, fps = config.num_frames, config.fps
    if args.delay_frames >= frames:
        raise SystemExit(f"--delay-frames must be below the clip's {frames} frames, got {args.delay_frames}")
    delay_s = args.delay_frames / fps
    if args.noised_sound:
        context = noised_sound(pipe)
    elif args.reconstruction is not None:
        context = reconstruction_guidance(pipe, args.reconstruction, args.flat)
    else:
        context = contextlib.nullcontext()
    with context:
        rows = probe(pipe, config, range(args.first, args.first + args.count), delay_s)
    summary = summarise(rows, delay_s)
    for key, value in summary.items():
        print(f"{key:32s} {value}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
