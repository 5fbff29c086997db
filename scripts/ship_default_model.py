"""Copy a trained run's EMA model into the package as the embedded default model.

    python scripts/ship_default_model.py ~/.cache/happyhorse/runs/default/model \
        --sampler euler --steps 16 --guidance 1.0

The weights are stored in float16 (half the file; the pipeline computes in float32), and the
sampling defaults are those chosen by `bench/sampling_defaults.py`. The target is replaced atomically.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from happyhorse.diffusion import SAMPLERS
from happyhorse.model.refiner import VideoRefiner
from happyhorse.pipeline import DEFAULT_MODEL_DIR, HappyHorsePipeline
from happyhorse.train.trainer import widen_text_layers


def guide_for(pipe: HappyHorsePipeline, directory: Path, own_guide: bool = False):
    """The transformer of `directory` (or its guide_transformer/, `own_guide`) made to read the MiniLM
    layers `pipe` reads: a guide trained on fewer layers gets zero columns for the rest (same function)."""
    source = HappyHorsePipeline.from_pretrained(directory)
    guide = source.transformer
    if own_guide:
        if source.guide_transformer is None:
            raise ValueError(f"{directory} has no guide_transformer/")
        guide = source.guide_transformer
    theirs, ours = getattr(source.text_encoder, "layers", None), getattr(pipe.text_encoder, "layers", None)
    if theirs is not None and ours is not None and theirs != ours:
        guide = widen_text_layers(guide, theirs, ours)
    return guide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model directory, e.g. RUN/model written by happyhorse train")
    parser.add_argument("--sampler", choices=SAMPLERS, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--audio-guidance", type=float, default=None)
    parser.add_argument("--shift", type=float, default=None, help="the noise schedule's shift")
    parser.add_argument(
        "--interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"), help="noise levels guided"
    )
    guides = parser.add_mutually_exclusive_group()
    guides.add_argument(
        "--guide", type=Path, default=None, help="a weaker model directory whose transformer autoguidance steers from"
    )
    guides.add_argument(
        "--guide-of", type=Path, default=None, help="a model directory whose own guide_transformer/ is the guide"
    )
    parser.add_argument("--autoguidance", type=float, default=None, help="video autoguidance scale (needs a guide)")
    parser.add_argument("--audio-autoguidance", type=float, default=None, help="the sound's autoguidance scale")
    parser.add_argument(
        "--autoguidance-interval",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="levels guided by it",
    )
    parser.add_argument(
        "--noise-correlation", type=float, default=None, help="share of the video noise all latent frames share"
    )
    parser.add_argument("--restarts", type=int, default=None, help="restart sampling: walk the band again N times")
    parser.add_argument(
        "--restart-interval", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"), help="the band restarts walk"
    )
    parser.add_argument(
        "--refiner",
        type=Path,
        default=None,
        help="a refiner directory (RUN/refiner of happyhorse train-refiner) that redraws the decoded frames",
    )
    parser.add_argument("--no-refiner", action="store_true", help="ship without the model's refiner/")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    pipe = HappyHorsePipeline.from_pretrained(args.model)
    if args.guide is not None or args.guide_of is not None:
        flag = "--guide" if args.guide is not None else "--guide-of"
        try:
            pipe.set_guide(guide_for(pipe, args.guide or args.guide_of, own_guide=args.guide_of is not None))
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"{flag}: {exc}")
    if args.refiner is not None and args.no_refiner:
        parser.error("--refiner and --no-refiner: give one")
    if args.refiner is not None:
        try:
            pipe.refiner = VideoRefiner.from_pretrained(args.refiner)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"--refiner: {exc}")
    if args.no_refiner:
        pipe.refiner = None
    chosen = {
        "sampler": args.sampler,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "audio_guidance_scale": args.audio_guidance,
        "shift": args.shift,
        "guidance_interval": tuple(args.interval) if args.interval else None,
        "autoguidance_scale": args.autoguidance,
        "audio_autoguidance_scale": args.audio_autoguidance,
        "autoguidance_interval": tuple(args.autoguidance_interval) if args.autoguidance_interval else None,
        "noise_correlation": args.noise_correlation,
        "restarts": args.restarts,
        "restart_interval": tuple(args.restart_interval) if args.restart_interval else None,
    }
    try:
        pipe.scheduler = replace(pipe.scheduler, **{k: v for k, v in chosen.items() if v is not None})
    except ValueError as exc:
        parser.error(str(exc))
    sch = pipe.scheduler
    if sch.restarts:
        try:
            sch.schedule()
        except ValueError as exc:
            parser.error(f"--restart-interval: {exc} ({sch.num_inference_steps} steps, shift {sch.shift})")
    if (sch.autoguidance_scale, sch.audio_autoguidance_scale) != (1.0, 1.0) and not (
        pipe.guide_transformer is not None or sch.guide_skip_blocks or sch.guide_frame_local_blocks
    ):
        parser.error("--autoguidance: needs a guide model (--guide DIR); the model has none")
    pipe.save_pretrained(args.out, weights_dtype=torch.float16)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): {pipe.scheduler}")


if __name__ == "__main__":
    main()
