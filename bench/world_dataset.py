"""Throughput of the world data set on one core: clips/s through a PyTorch DataLoader.

    python bench/world_dataset.py [--clips 400] [--batch 16] [--size 64x64 --fps 12 --seconds 2 --sample-rate 16000]

Runs in the main process with one intra-op thread, so the figure is per core; DataLoader workers
scale it by the number of cores given to them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch.utils.data import DataLoader

from happyhorse.world import WorldConfig
from happyhorse.world.dataset import WorldDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", default="64x64")
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    width, height = (int(v) for v in args.size.lower().split("x"))
    config = WorldConfig(width, height, args.fps, args.seconds, args.sample_rate)
    loader = DataLoader(WorldDataset(args.clips, "train", config), batch_size=args.batch, num_workers=0)
    next(iter(DataLoader(WorldDataset(4, "train", config, first_seed=10**6), batch_size=4)))  # warm-up
    start = time.perf_counter()
    count = 0
    for batch in loader:
        count += batch["video"].shape[0]
    seconds = time.perf_counter() - start
    result = {
        "clips_per_second": round(count / seconds, 1),
        "clips": count,
        "seconds": round(seconds, 2),
        "config": vars(args),
        "cores": 1,
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
