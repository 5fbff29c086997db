"""A model directory whose transformer is (1 - alpha) x A + alpha x B, two models of one architecture.

A fine-tune of the default model bought shape and direction but lost subject consistency and sync;
interpolating its weights with the model it started from (WiSE-FT, Wortsman et al. 2022) walks the
line between the two, which `happyhorse eval --model` then measures point by point:

    python scripts/interpolate_models.py happyhorse/assets/default_model \
        ~/.cache/happyhorse/runs/h200d/model 0.5 --out /tmp/wise_05

An alpha past 1 extrapolates: the midpoint M of A and a fine-tune F is shipped and A is in git, so
`interpolate_models.py A M 2` rebuilds F = 2 M - A (to float16 rounding) where F itself was not kept.

Everything but the transformer's weights (codecs, text encoder, sampling config) comes from A, except
a guide model: the result has none, and no autoguidance term (a guide is chosen for one model).
The weights are computed in float32 and written in float32 (ship_default_model.py stores float16).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from happyhorse.components import Components
from happyhorse.diffusion.guidance import AutoGuidance


def interpolate(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """(1 - alpha) a + alpha b, key by key, in float32; the two must hold the same keys and shapes."""
    if a.keys() != b.keys():
        raise ValueError(f"the two transformers differ in their weights: {sorted(a.keys() ^ b.keys())[:5]}")
    mixed = {}
    for key, x in a.items():
        if x.shape != b[key].shape:
            raise ValueError(f"{key}: shape {tuple(x.shape)} in A but {tuple(b[key].shape)} in B")
        mixed[key] = torch.lerp(x.float(), b[key].float(), alpha) if x.is_floating_point() else x
    return mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="a model directory (alpha 0)")
    parser.add_argument("b", type=Path, help="a model directory of the same architecture (alpha 1)")
    parser.add_argument("alpha", type=float, help="B's share: 0..1 interpolates, -2..0 and 1..3 extrapolate")
    parser.add_argument("--out", type=Path, required=True, help="the model directory to write")
    args = parser.parse_args()
    if not -2.0 <= args.alpha <= 3.0:
        parser.error(f"alpha: {args.alpha} is outside -2..3")
    loaded = {}
    for name in ("a", "b"):
        try:
            loaded[name] = Components.from_pretrained(getattr(args, name))
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"{name}: {exc}")
    parts, other = loaded["a"], loaded["b"]
    if parts.transformer.cfg != other.transformer.cfg:
        parser.error(f"b: its transformer config differs from a's ({other.transformer.cfg} vs {parts.transformer.cfg})")
    mixed = interpolate(parts.transformer.state_dict(), other.transformer.state_dict(), args.alpha)
    parts.transformer.float().load_state_dict(mixed)
    # a guide belongs to the model it was chosen for: the new weights get none (ship_default_model --guide)
    parts.guide_transformer = None
    terms = tuple(t for t in parts.sampling.guidance if not isinstance(t, AutoGuidance))
    parts.sampling = replace(parts.sampling, guidance=terms)
    parts.save_pretrained(args.out)
    print(f"wrote {args.out}: {1 - args.alpha:g} x {args.a} + {args.alpha:g} x {args.b}")


if __name__ == "__main__":
    main()
