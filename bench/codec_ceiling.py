"""What a video codec leaves of the world's ground truth: the evaluation suite on test-split clips
passed through encode + decode, beside the same clips untouched.

    python bench/codec_ceiling.py --codec ~/.cache/happyhorse/runs/video_codec/codec --count 60
    python bench/codec_ceiling.py --blur 1.0 --count 30   # a reference: the clips under a Gaussian blur
    python bench/codec_ceiling.py --rank 256 --count 30   # what a linear head of width 256 could draw

A model that generates over a codec cannot score better than its reconstructions: this is the ceiling
the codec sets on colour, shape, direction, object persistence and subject consistency (issue 5's bars),
and the PSNR of the reconstructions over all pixels and over the objects' pixels.

`--rank K` asks it of the patch codec's own model: the transformer paints each 4x8x8 RGB cell (768
numbers) through a linear head from its `dim` features, so every cell it draws lies in one K = dim
dimensional subspace. The best such subspace for world clips is their cells' top K principal
components (fitted on `--fit-clips` train clips); the clips rebuilt from it are the most a head of
that width could draw.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from happyhorse.codecs import Codec
from happyhorse.codecs.video import PatchVideoCodec
from happyhorse.eval import evaluate_clips
from happyhorse.train.codec import psnr
from happyhorse.world import WorldConfig, make_clip, write_sample
from happyhorse.world.sample import OBJECT_COVERAGE

COLUMNS = (
    "colour_accuracy",
    "shape_accuracy",
    "direction_accuracy",
    "count_accuracy",
    "object_permanence",
    "object_persistence_rate",
    "subject_consistency_proxy",
    "physics_residual_px",
)


def principal_components(cells: PatchVideoCodec, world: WorldConfig, clips: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean cell and the principal directions (columns, strongest first) of train clips' cells."""
    total, outer, n = 0.0, 0.0, 0
    for seed in range(clips):
        z = cells.encode(torch.from_numpy(make_clip(seed, "train", world, ground_truth=False).frames)[None])
        z = z.reshape(-1, cells.latent_dim).double()
        total, outer, n = total + z.sum(0), outer + z.T @ z, n + len(z)
    mean = total / n
    _, vectors = torch.linalg.eigh(outer / n - torch.outer(mean, mean))
    return mean, vectors.flip(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--codec", type=Path, help="A video codec directory (config.json).")
    source.add_argument(
        "--blur", type=float, help="No codec: blur each frame by a Gaussian of this sigma (pixels), a reference."
    )
    source.add_argument(
        "--rank", type=int, help="No codec: 4x8x8 pixel cells kept to their top RANK principal components."
    )
    parser.add_argument("--fit-clips", type=int, default=300, help="With --rank: train clips the components come from.")
    parser.add_argument("--count", type=int, default=60, help="Test-split clips.")
    parser.add_argument("--size", type=int, default=64, help="Frame width and height.")
    parser.add_argument("--out", type=Path, default=None, help="Keep the clips here (default: a temporary dir).")
    parser.add_argument("--json", type=Path, default=None, help="Write the table as JSON here.")
    args = parser.parse_args()
    if args.codec is not None:
        codec = Codec.from_pretrained(args.codec)
        frames = codec.num_frames(25)

        def passed(clip: np.ndarray) -> np.ndarray:
            return codec.decode(codec.encode(torch.from_numpy(clip)[None]))[0].numpy()
    elif args.rank is not None:
        cells = PatchVideoCodec()
        frames = 25
        if not 1 <= args.rank <= cells.latent_dim:
            parser.error(f"--rank: must be in 1..{cells.latent_dim} (a 4x8x8 RGB cell's numbers), got {args.rank}")
        if args.fit_clips < 1:
            parser.error(f"--fit-clips: must be >= 1, got {args.fit_clips}")
        mean, basis = principal_components(
            cells, WorldConfig(args.size, args.size, 12.0, frames / 12.0), args.fit_clips
        )
        top = basis[:, : args.rank]

        def passed(clip: np.ndarray) -> np.ndarray:
            z = cells.encode(torch.from_numpy(clip)[None]).double() - mean
            return cells.decode(((z @ top) @ top.T + mean).float())[0].numpy()
    else:
        if args.blur <= 0:
            parser.error(f"--blur must be a sigma > 0 pixels, got {args.blur}")
        frames = 25

        def passed(clip: np.ndarray) -> np.ndarray:
            return np.stack([cv2.GaussianBlur(f, (0, 0), args.blur) for f in clip])

    world = WorldConfig(args.size, args.size, 12.0, frames / 12.0)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        errors, object_errors = [], []
        for i in range(args.count):
            truth = make_clip(i, "test", world, object_coverage=True)
            decoded = passed(truth.frames)
            err = ((decoded.astype(np.float64) - truth.frames) ** 2).mean(-1)
            errors.append(err.mean())
            on = truth.meta[OBJECT_COVERAGE] > 127
            if on.any():
                object_errors.append(err[on].mean())
            write_sample(truth, out / "truth", f"{i:03d}")
            write_sample(replace(truth, frames=decoded), out / "decoded", f"{i:03d}")
        table = {}
        for name in ("truth", "decoded"):
            metrics = evaluate_clips(out / name, "all", workers=1)["metrics"]
            table[name] = {c: metrics[c]["value"] for c in COLUMNS if c in metrics}
        table["decoded"]["psnr"] = psnr(float(np.mean(errors)))
        table["decoded"]["object_psnr"] = psnr(float(np.mean(object_errors)))
    print(f"{'metric':28s} {'truth':>8s} {'decoded':>8s}")
    for c in (*COLUMNS, "psnr", "object_psnr"):
        print(f"{c:28s} {table['truth'].get(c, float('nan')):8.3f} {table['decoded'].get(c, float('nan')):8.3f}")
    if args.json:
        source = str(args.codec) if args.codec is not None else f"blur {args.blur}"
        source = f"rank {args.rank} of {args.fit_clips} train clips' cells" if args.rank is not None else source
        args.json.write_text(json.dumps({"codec": source, "count": args.count, **table}, indent=1))


if __name__ == "__main__":
    main()
