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

`--fit RECIPE --fit-steps N` asks instead whether the term can be learnt at all: it fine-tunes the
model on the term and the flow loss of RECIPE (a training config with audio_contrast_weight > 0) for N
steps on one fixed training batch, every sample given its sound at noise `--fit-sigma`, and prints the
share and gap on that batch and on the next one (new clips) every 10 steps. A term that takes hold of
its batch but not of the next lacks clips, not a gradient.

    python bench/audio_contrast_gap.py --fit configs/finetune_audio_contrast_high.toml --fit-steps 40
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
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
    """Relative gaps (e_moved - e_own) / e_own of test clips first.. at one noise level, for those whose
    sound has an impact (without one, the moved sound differs in ambience noise alone); the impacts
    move by +shift_s in even clips and -shift_s in odd ones."""
    clips = [
        make_clip(i, "test", config, ground_truth=False, sound_shift_s=shift_s if i % 2 == 0 else -shift_s)
        for i in range(first, first + count)
    ]
    clips = [c for c in clips if c.meta["audible_impacts"] > 0]
    if not clips:
        return np.zeros(0)
    own = video_errors(pipe, clips, np.stack([c.audio for c in clips]), sigma, first)
    moved = video_errors(pipe, clips, np.stack([c.meta["shifted_audio"] for c in clips]), sigma, first)
    return (moved - own) / np.maximum(own, 1e-12)


def fixed_batch(cfg, pipe, step: int, sigma: float):
    """The training inputs of RECIPE's step `step`, every sample given its whole sound and no frame, its
    video noised to `sigma`."""
    from happyhorse.train.trainer import StepBatches, prepare_step

    x = prepare_step(cfg, pipe, next(iter(StepBatches(cfg, step, step + 1))), "cpu")
    return replace(
        x,
        sigma=torch.full_like(x.sigma, sigma),
        video_t=(1 - sigma) * x.video_x0 + sigma * x.video_noise,
        audio_t=x.audio_x0,
        video_clean=torch.zeros_like(x.video_clean),
        audio_clean=torch.ones_like(x.audio_clean),
    )


def batch_gaps(model, x, cfg) -> np.ndarray:
    """Relative gaps (e_moved - e_own) / e_own of one batch of training inputs whose sound has an impact
    (the flow loss's video errors, the same up to sigma squared as video_errors')."""
    from happyhorse.train.trainer import step_loss

    plain = replace(cfg, audio_contrast_weight=0.0, precision="float32")  # gaps of 1e-3: no bfloat16 rounding
    with torch.no_grad():
        own = step_loss(model, x, plain, model.cfg.prediction)[1]["video"]
        moved = step_loss(model, replace(x, audio_t=x.audio_shifted), plain, model.cfg.prediction)[1]["video"]
    return ((moved - own) / own.clamp(min=1e-12))[x.audible].numpy()


def fit_one_batch(recipe: str, model_dir: str | None, steps: int, sigma: float, log=print) -> list[dict]:
    """Fine-tune `model_dir` (default: the embedded model) on RECIPE's loss for `steps` steps on its
    first batch; the gaps on that batch and on the next one, before and every 10 steps."""
    from happyhorse.pipeline import DEFAULT_MODEL_DIR
    from happyhorse.train import load_config
    from happyhorse.train.trainer import build_run_pipeline, load_init_weights, step_loss

    cfg = load_config(recipe)
    if cfg.audio_contrast_weight <= 0:
        raise SystemExit(f"--fit: {recipe} has no audio_contrast_weight")
    # float32, as the model card's figures were fitted (the recipe's own precision may be bfloat16 here)
    cfg = replace(cfg, audio_contrast_min_sigma=min(cfg.audio_contrast_min_sigma, sigma), precision="float32")
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer
    model.load_state_dict(load_init_weights(model_dir or DEFAULT_MODEL_DIR, model, cfg.text_layers))
    model.train()
    fitted, held = fixed_batch(cfg, pipe, 0, sigma), fixed_batch(cfg, pipe, 1, sigma)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    rows = []
    for step in range(steps + 1):
        if step % 10 == 0 or step == steps:
            rows.append(
                {
                    "step": step,
                    "fitted": summarise(batch_gaps(model, fitted, cfg)),
                    "next": summarise(batch_gaps(model, held, cfg)),
                }
            )
            f, n = rows[-1]["fitted"], rows[-1]["next"]
            log(
                f"step {step}: fitted batch own better {f['own_better']:.2f} gap {f['mean_gap']:+.4f}; "
                f"next batch {n['own_better']:.2f} gap {n['mean_gap']:+.4f}",
                flush=True,
            )
        if step == steps:
            break
        loss, _ = step_loss(model, fitted, cfg, model.cfg.prediction)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
    return rows


def summarise(gaps: np.ndarray) -> dict:
    if not gaps.size:
        return {"own_better": float("nan"), "mean_gap": float("nan"), "median_gap": float("nan"), "clips": 0}
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
    parser.add_argument("--fit", default=None, help="a training config: fit its term on one batch instead")
    parser.add_argument("--fit-steps", type=int, default=40)
    parser.add_argument("--fit-sigma", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.fit is not None:
        if args.fit_steps < 1 or not 0 < args.fit_sigma <= 1:
            raise SystemExit(
                f"--fit-steps must be >= 1 and --fit-sigma in (0, 1], got {args.fit_steps}, {args.fit_sigma}"
            )
        rows = fit_one_batch(args.fit, args.model, args.fit_steps, args.fit_sigma)
        if args.json:
            args.json.write_text(json.dumps({"fit": args.fit, "sigma": args.fit_sigma, "rows": rows}, indent=1))
        return
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
