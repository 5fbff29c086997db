"""Evaluation speed: `happyhorse eval --clips` on N world clips (default 100 of 2 s at 64 x 64).

    python bench/eval_speed.py [--count 100] [--workers 2]

Writes the clips to a temporary directory first (not timed), then times the whole evaluation
(all suites: temporal, world, sync), as `happyhorse eval` runs it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from happyhorse.eval import evaluate_clips
from happyhorse.world import make_clip, write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.count):
            write_sample(make_clip(seed, "test"), Path(tmp), f"{seed:04d}")
        start = time.perf_counter()
        report = evaluate_clips(tmp, "all", workers=args.workers)
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "clips": args.count,
                "seconds": round(seconds, 2),
                "seconds_per_clip": round(seconds / args.count, 3),
                "metrics": {k: round(v["value"], 4) for k, v in report["metrics"].items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
