"""TI2V from the given frame held still: does starting there keep its object whole?

    python bench/ti2v_frame_init.py --level 1 -- --count 120 --modes TI2V --grid GRID_POINT --json fi1.json

In TI2V the given frame's object dissolves into patches after frame 0 (MODEL_CARD.md, failure modes).
ConsistI2V (Ren et al. 2024, "FrameInit") starts image-to-video sampling from the first frame held
still and noised, so the layout begins as the image's. Here: TI2V sampling skips the schedule's first
`--level` levels and starts at level s = sigmas[level] from (1 - s) * (the given frame repeated over
every latent frame) + s * (the sample's own starting noise), and the sound from silence at the same level
(s * its starting noise); T2V and TA2V sample as before. Everything
after `--` goes to bench/sampling_defaults.py, whose grid, prompts and JSON this run uses (compare its
rows with the same point's plain run by bench/compare_points.py).
"""

from __future__ import annotations

import argparse
import sys

import happyhorse.pipeline as pipeline_module

_plain_sample = pipeline_module.sample


def start_from_the_given_frame(level: int):
    """A drop-in for the pipeline's `sample` that starts TI2V sampling at `level` from the held frame."""

    def sample(denoise, noise, sigmas, method="euler", clean=None, generator=None, callback=None, fresh_noise=None):
        if clean is not None and clean[0] is not None and level > 0:
            # the levels before the first restart (or before the last step to 0)
            plain = next((i for i in range(len(sigmas) - 1) if sigmas[i + 1] > sigmas[i]), len(sigmas) - 1)
            if level >= min(plain, len(sigmas) - 2):
                raise ValueError(f"--level: must be below {min(plain, len(sigmas) - 2)} for this schedule, got {level}")
            s = sigmas[level]
            held = clean[0][1]  # the given frame's latents, repeated over every latent frame
            # the video from the held frame; the sound from silence (no clean sound to start from), both at s
            noise = [(1 - s) * held + s * noise[0], *(s * n for n in noise[1:])]
            sigmas = sigmas[level:]
        return _plain_sample(denoise, noise, sigmas, method, clean, generator, callback, fresh_noise)

    return sample


def main() -> None:
    argv = sys.argv[1:]
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, required=True, help="schedule levels to skip in TI2V (1: start at 0.92)")
    args = parser.parse_args(ours)
    if args.level < 0:
        raise SystemExit(f"--level: must be >= 0, got {args.level}")
    pipeline_module.sample = start_from_the_given_frame(args.level)
    import sampling_defaults

    sys.argv = ["sampling_defaults.py", *rest]
    sampling_defaults.main()


if __name__ == "__main__":
    main()
