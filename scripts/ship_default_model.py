"""Copy a trained run's EMA model into the package as the embedded default model, with the sampling
config chosen for it and, for autoguidance, its guide model.

    python scripts/ship_default_model.py ~/.cache/happyhorse/runs/default/model --sampler dpmpp_2m --steps 7 \
        --guidance 5 --audio-guidance 3 --noise-correlation 0.2 --restarts 1 --restart-interval 0.5 0.8 \
        --guide BASE_MODEL_DIR --autoguidance 3 --autoguidance-interval 0.5 1

The weights are stored in float16 (half the file; generation computes in float32). Each flag changes one
field of the model's stored sampling config (happyhorse/diffusion/sampling.py validates them all); the
target is replaced atomically.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from happyhorse.components import DEFAULT_MODEL_DIR, Components
from happyhorse.diffusion import SAMPLERS
from happyhorse.diffusion.guidance import AutoGuidance, ClassifierFreeGuidance


def guide_for(directory: Path, own_guide: bool = False):
    """The transformer of `directory`, or (`own_guide`) its guide_transformer/."""
    source = Components.from_pretrained(directory)
    if not own_guide:
        return source.transformer
    if source.guide_transformer is None:
        raise ValueError(f"{directory} has no guide_transformer/")
    return source.guide_transformer


def with_term(terms: tuple, kind: type, scale, audio_scale, interval) -> tuple:
    """`terms` with the term of `kind` changed where a flag was given (None keeps a field)."""
    old = next((t for t in terms if isinstance(t, kind)), kind())
    new = kind(
        old.scale if scale is None else scale,
        old.audio_scale if audio_scale is None else audio_scale,
        old.interval if interval is None else tuple(interval),
    )
    rest = tuple(t for t in terms if not isinstance(t, kind))
    return (*rest, new) if new.active else rest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model directory, e.g. RUN/model written by happyhorse train")
    parser.add_argument("--sampler", choices=SAMPLERS, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--shift", type=float, default=None, help="the noise schedule's shift")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance on the video")
    parser.add_argument("--audio-guidance", type=float, default=None, help="classifier-free guidance on the sound")
    parser.add_argument("--interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="noise levels classifier-free guidance applies at")  # fmt: skip
    guides = parser.add_mutually_exclusive_group()
    guides.add_argument("--guide", type=Path, default=None, help="a weaker model directory: its transformer guides")
    guides.add_argument("--guide-of", type=Path, default=None, help="a model directory whose guide_transformer/ guides")
    parser.add_argument("--autoguidance", type=float, default=None, help="video autoguidance scale (needs a guide)")
    parser.add_argument("--audio-autoguidance", type=float, default=None, help="the sound's autoguidance scale")
    parser.add_argument("--autoguidance-interval", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="noise levels autoguidance applies at")  # fmt: skip
    parser.add_argument("--noise-correlation", type=float, default=None, help="share of the video noise over time")
    parser.add_argument("--restarts", type=int, default=None, help="restart sampling: walk the band again N times")
    parser.add_argument("--restart-interval", nargs=2, type=float, default=None, metavar=("LOW", "HIGH"),
                        help="the band restarts walk")  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()
    parts = Components.from_pretrained(args.model)
    if args.guide is not None or args.guide_of is not None:
        flag = "--guide" if args.guide is not None else "--guide-of"
        try:
            parts.guide_transformer = guide_for(args.guide or args.guide_of, own_guide=args.guide_of is not None)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"{flag}: {exc}")
    chosen = {
        "sampler": args.sampler,
        "num_inference_steps": args.steps,
        "shift": args.shift,
        "noise_correlation": args.noise_correlation,
        "restarts": args.restarts,
        "restart_interval": tuple(args.restart_interval) if args.restart_interval else None,
    }
    try:
        terms = with_term(parts.sampling.guidance, ClassifierFreeGuidance, args.guidance, args.audio_guidance,
                          args.interval)  # fmt: skip
        terms = with_term(terms, AutoGuidance, args.autoguidance, args.audio_autoguidance, args.autoguidance_interval)
        sampling = replace(parts.sampling, guidance=terms, **{k: v for k, v in chosen.items() if v is not None})
        parts = replace(parts, sampling=sampling)  # autoguidance needs a guide model (--guide DIR)
    except ValueError as exc:
        parser.error(str(exc))
    parts.save_pretrained(args.out, weights_dtype=torch.float16)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): {parts.sampling}")


if __name__ == "__main__":
    main()
