"""How much of the model's video loss is on the objects: the share on tokens an object touches.

The model's objects are clouds of patch cells (MODEL_CARD.md). If the static background took most of
the loss, weighting the loss toward objects would move the model's capacity to them; if the objects
already take it, such a weighting has little to move. Measured on training batches of a recipe (the
world's exact per-pixel object coverage, pooled per token), by noise level, in float32 on the CPU.

    python bench/loss_on_objects.py                  # the embedded default model, 6 batches of 16
    python bench/loss_on_objects.py --model DIR --batches 12 --seed 7

`python bench/codec_ceiling.py --rank K` asks the other cheap question, what a linear head of
width K could draw at best.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

# noise-level bands (sigma in [low, high); 1.0 itself is in the last) and the whole batch
BANDS = {"0-0.4": (0.0, 0.4), "0.4-0.7": (0.4, 0.7), "0.7-0.9": (0.7, 0.9), "0.9-1": (0.9, 1.01), "all": (0.0, 1.01)}
RECIPE = Path(__file__).resolve().parents[1] / "configs" / "finetune_default.toml"
TOUCHED = 1e-3  # a token an object covers more than this share of counts as an object token


def loss_shares(errors: torch.Tensor, covered: torch.Tensor, sigma: torch.Tensor, trained: torch.Tensor) -> dict:
    """errors [B, N] (each token's squared error), covered [B, N] (object share of each token's pixels),
    sigma [B], trained [B, N] (tokens the loss counts) -> {band: (share of the loss on object tokens,
    share of the tokens that are object tokens, mean error of an object token, of another token)} for
    each band with trained tokens in it. The means compare models; the shares say where one errs."""
    touched = covered > TOUCHED
    out = {}
    for name, (low, high) in BANDS.items():
        rows = ((sigma >= low) & (sigma < high))[:, None] & trained
        if rows.any():
            on, off = errors[rows & touched], errors[rows & ~touched]
            total = on.sum() + off.sum()
            share = float(on.sum() / total) if total > 0 else float("nan")
            out[name] = (share, float(touched[rows].float().mean()), _mean(on), _mean(off))
    return out


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else float("nan")


@torch.no_grad()
def measure_loss(model_dir: str | None, config: str, batches: int, seed: int) -> dict:
    """loss_shares over `batches` training batches of `config` (clips of world `seed`), float32 on the CPU."""
    from happyhorse import HappyHorsePipeline
    from happyhorse.diffusion.flow import velocity_error
    from happyhorse.train import load_config
    from happyhorse.train.trainer import StepBatches, prepare_step, token_sigmas

    # a weight of 1 makes the batch carry each token's object coverage (video_weight = 1 + coverage)
    cfg = load_config(config, {"object_loss_weight": 1.0, "seed": seed, "precision": "float32"})
    pipe = HappyHorsePipeline.from_pretrained(model_dir)
    model = pipe.transformer.float().eval()
    errors, covered, sigmas, trained = [], [], [], []
    for step in range(batches):
        x = prepare_step(cfg, pipe, next(iter(StepBatches(cfg, step, step + 1))), "cpu")
        tokens = token_sigmas(x)
        out = model(x.video_t, x.audio_t, x.text, x.text_mask, x.positions, x.video_clean, x.audio_clean, tokens)
        s = x.sigma[:, None, None]
        error = velocity_error(out.video, x.video_x0, x.video_noise, x.video_t, s, model.cfg.prediction)
        errors.append(error.pow(2).mean(-1))
        covered.append(x.video_weight - 1)
        sigmas.append(x.sigma)
        trained.append(~x.video_clean)
    return loss_shares(torch.cat(errors), torch.cat(covered), torch.cat(sigmas), torch.cat(trained))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument("--config", default=str(RECIPE), help="the batches' recipe")
    parser.add_argument("--batches", type=int, default=6, help="batches of the recipe's size")
    parser.add_argument("--seed", type=int, default=7, help="world seed of the batches")
    args = parser.parse_args()
    if args.batches < 1:
        parser.error(f"--batches: must be >= 1, got {args.batches}")
    for band, (share, tokens, on, off) in measure_loss(args.model, args.config, args.batches, args.seed).items():
        print(
            f"sigma {band:>7}: {share:.3f} of the video loss on object tokens ({tokens:.3f} of the tokens);"
            f" mean error {on:.4f} on an object token, {off:.4f} on another"
        )


if __name__ == "__main__":
    main()
