"""Which output should the network predict: x0, v, eps or edm? (The loss is always on v.)

Trains the same small model on the same world clips once per parameterisation, then measures on
held-out test clips (fixed noise draws) how well each recovers the clean latents:

    python bench/prediction.py [--steps 300] [--size 32] [--predictions x0 v eps edm] [--json out.json]

Reported per parameterisation: the v-loss and the x0 error (RMSE of predicted vs true clean
latents, video and audio) at sigma = 0.25, 0.5, 0.75, 0.95, and the same x0 error of the trivial
predictor 0 (mid-grey, silence) for scale. Lower is better.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from happyhorse.diffusion import add_noise, predicted_x0
from happyhorse.train import TrainConfig
from happyhorse.train.trainer import StepBatches, build_run_pipeline, lr_at, prepare_step, step_loss

SIGMAS = (0.25, 0.5, 0.75, 0.95)


def make_config(prediction: str, args) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "model": "tiny",
            "model_overrides": {"prediction": prediction, "absolute_positions": True},
            "text_encoder": "hash",
            "width": args.size,
            "height": args.size,
            "num_frames": 9,
            "batch_size": args.batch,
            "lr": 2e-3,
            "warmup_steps": 20,
            "max_steps": args.steps,
            "num_workers": 0,
            "seed": 0,
            "precision": "float32",  # as bench/results_prediction_cpu.json was measured
        }
    )


@torch.no_grad()
def held_out_errors(model, pipe, cfg) -> dict:
    """x0 RMSE per sigma on fixed test-split batches (T2V: nothing given)."""
    test = dataclasses.replace(cfg, p_image=0.0, p_audio=0.0, text_dropout=0.0, seed=12345)
    batches = [b for _, b in zip(range(2), StepBatches(test, 0, 2), strict=False)]
    out = {}
    for sigma in SIGMAS:
        errs_v, errs_a, zero_v, zero_a = [], [], [], []
        for batch in batches:
            x = prepare_step(test, pipe, batch, "cpu")
            s = torch.full((x.sigma.shape[0],), sigma)
            vt = add_noise(x.video_x0, x.video_noise, s[:, None, None])
            at = add_noise(x.audio_x0, x.audio_noise, s[:, None, None])
            x = dataclasses.replace(x, sigma=s, video_t=vt, audio_t=at)
            token_sigma = torch.full((s.shape[0], vt.shape[1] + at.shape[1]), sigma)
            o = model(vt, at, x.text, x.text_mask, x.positions, x.video_clean, x.audio_clean, token_sigma)
            sig = torch.tensor(sigma)
            errs_v.append((predicted_x0(o.video, vt, sig, model.cfg.prediction) - x.video_x0).pow(2).mean())
            errs_a.append((predicted_x0(o.audio, at, sig, model.cfg.prediction) - x.audio_x0).pow(2).mean())
            zero_v.append(x.video_x0.pow(2).mean())
            zero_a.append(x.audio_x0.pow(2).mean())
        out[str(sigma)] = {
            "video_x0_rmse": float(torch.stack(errs_v).mean().sqrt()),
            "audio_x0_rmse": float(torch.stack(errs_a).mean().sqrt()),
            "video_rmse_of_zero": float(torch.stack(zero_v).mean().sqrt()),
            "audio_rmse_of_zero": float(torch.stack(zero_a).mean().sqrt()),
        }
    return out


def run(prediction: str, args) -> dict:
    cfg = make_config(prediction, args)
    pipe = build_run_pipeline(cfg)
    model = pipe.transformer.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    start, losses = time.perf_counter(), []
    for batch in StepBatches(cfg, 0, args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, batch["step"])
        loss, _ = step_loss(model, prepare_step(cfg, pipe, batch, "cpu"), cfg, prediction)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
    model.eval()
    tail = losses[-max(1, args.steps // 10) :]
    return {
        "prediction": prediction,
        "steps": args.steps,
        "final_train_v_loss": sum(tail) / len(tail),
        "held_out": held_out_errors(model, pipe, cfg),
        "train_seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--predictions", nargs="+", default=["x0", "v", "eps", "edm"])
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = [run(p, args) for p in args.predictions]
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
