"""What the repeatable MP4s cost: bytes and PSNR with x264's macroblock tree off (the default) and on.

`save_video` turns the tree off because with it the same frames were coded differently from run to
run (happyhorse/media.py). This writes world test clips both ways at the same CRF and reports the
total bytes of the MP4s (picture and sound) and the mean PSNR of the decoded frames against the
originals.

    python bench/mp4_size.py --count 10 --size 64
    python bench/mp4_size.py --count 10 --size 256
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from happyhorse.media import read_video, save_video
from happyhorse.world import WorldConfig, make_clip

SETTINGS = {"tree off (repeatable, default)": True, "tree on (x264's default)": False}


def psnr(decoded: np.ndarray, original: np.ndarray) -> float:
    mse = np.mean((decoded.astype(np.float64) - original) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10, help="world test clips")
    parser.add_argument("--size", type=int, default=64, help="frame width and height in pixels")
    parser.add_argument("--crf", type=int, default=18)
    args = parser.parse_args()
    if args.count < 1 or not 16 <= args.size <= 1024:
        raise SystemExit(f"--count must be >= 1 and --size in 16..1024, got {args.count} and {args.size}")
    config = WorldConfig(args.size, args.size, 12.0, 25 / 12, 16000, 1)
    clips = [make_clip(i, "test", config) for i in range(args.count)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, repeatable in SETTINGS.items():
            sizes, quality = [], []
            for k, clip in enumerate(clips):
                path = save_video(
                    Path(tmp) / f"{k}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate,
                    crf=args.crf, repeatable=repeatable,
                )  # fmt: skip
                sizes.append(path.stat().st_size)
                quality.append(psnr(read_video(path).frames, clip.frames))
            print(f"{name:30s} {sum(sizes):9d} bytes   PSNR {np.mean(quality):.2f} dB")


if __name__ == "__main__":
    main()
