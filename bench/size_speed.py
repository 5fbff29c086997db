"""What wider models would cost at the default settings: seconds per clip of random-weight copies.

    python bench/size_speed.py --sizes 256x6 384x8 512x8 --dtypes bfloat16 float32 --repeats 3
    python bench/size_speed.py --sizes 384x6 384x8 --no-guide     # without autoguidance: 16 forwards

Each size DIMxDEPTH is the embedded default model's layout (latents, text input, positions, SwiGLU of
3x the width, heads of 64 with half as many KV heads) at that width and depth, with random weights and
a guide of the same size (autoguidance, as the default samples: 3 forward passes a model call, 9 calls a
clip since 2026-12-06, 8 before), timed end to
end by `generate_speed.time_generation` with the default model's sampling settings. Speed does not
depend on the weights, so this tells which model a GPU run may train and still keep the 2 s bar.
`--no-guide` times them without a guide and with autoguidance off (2 passes a call).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import torch

from happyhorse.diffusion.guidance import AutoGuidance

sys.path.insert(0, str(Path(__file__).parent))
from generate_speed import time_generation  # noqa: E402

from happyhorse import HappyHorsePipeline  # noqa: E402
from happyhorse.model import SingleStreamTransformer  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    try:
        dim, depth = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--sizes: expected DIMxDEPTH such as 384x8, got {text!r}") from None
    if dim % 128 or depth < 2:
        raise SystemExit(
            f"--sizes: DIM must be a multiple of 128 (heads of 64, 2 per KV head), DEPTH >= 2; got {text!r}"
        )
    return dim, depth


def resized(base: HappyHorsePipeline, dim: int, depth: int, guide: bool = True) -> HappyHorsePipeline:
    """The base pipeline with random transformers (model and, with `guide`, a guide) of this width and
    depth; without a guide, autoguidance is off."""
    cfg = dataclasses.replace(
        base.transformer.cfg, dim=dim, depth=depth, heads=dim // 64, kv_heads=dim // 128, mlp_hidden=3 * dim
    )
    pipe = copy.copy(base)
    torch.manual_seed(0)
    pipe.transformer = SingleStreamTransformer(cfg).eval()
    pipe.guide_transformer = None
    if guide:
        pipe.set_guide(SingleStreamTransformer(cfg).eval())
    else:
        terms = tuple(t for t in base.sampling.guidance if not isinstance(t, AutoGuidance))
        pipe.sampling = dataclasses.replace(base.sampling, guidance=terms)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["256x6", "384x8", "512x8"])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-guide", action="store_true", help="no guide model, autoguidance off")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = [parse_size(t) for t in args.sizes]
    base = HappyHorsePipeline.from_pretrained()
    rows = []
    for dim, depth in sizes:
        pipe = resized(base, dim, depth, guide=not args.no_guide)
        params = sum(p.numel() for p in pipe.transformer.parameters())
        for dtype in args.dtypes:
            try:
                pipe.to("cpu", dtype)
            except ValueError as exc:
                raise SystemExit(f"--dtypes: {exc}") from None
            timing = time_generation(pipe, args.repeats)
            rows.append({"dim": dim, "depth": depth, "parameters": params, "guide": not args.no_guide, **timing})
            print(
                f"{dim}x{depth:<3d} {params / 1e6:6.1f} M  {dtype:9s} {timing['seconds_per_clip_median']:6.2f} s median"
                f" (max {timing['seconds_per_clip_max']:.2f})",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
