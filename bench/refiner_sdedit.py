"""Does a model's refiner mend the inputs it was trained on? Its SDEdit samples of world test clips,
scored by the evaluation suite unrefined and refined, beside the clips themselves.

    python bench/refiner_sdedit.py --model /tmp/refined --count 60 --json sdedit.json
    python bench/compare_points.py sdedit.json:0 sdedit.json:1 --rounds 2000   # paired: refined - unrefined

The refiner trains on such samples (of train clips; `happyhorse.train.refiner.make_pairs`), where the
layout is the clip's and only the drawing is the model's. If it mends these but not the model's samples
from pure noise, what limits it is that its inputs at generation are unlike its training inputs; if it
does not mend these either, the recipe itself is at fault. Each clip keeps its own soundtrack, so only
the video metrics say anything here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from happyhorse.eval import evaluate_clips
from happyhorse.pipeline import HappyHorsePipeline
from happyhorse.train.refiner import make_pairs
from happyhorse.world import WorldConfig, make_clip, write_sample

COLUMNS = ("colour_accuracy", "shape_accuracy", "count_accuracy", "object_permanence", "object_persistence_rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model directory with a refiner/")
    parser.add_argument("--count", type=int, default=60, help="test clips 0 .. count - 1")
    parser.add_argument("--json", type=Path, default=None, help="rows for bench/compare_points.py")
    args = parser.parse_args()
    pipe = HappyHorsePipeline.from_pretrained(args.model)
    if pipe.refiner is None:
        parser.error(f"--model: {args.model} has no refiner/")
    pairs = make_pairs(pipe, range(args.count), split="test")
    refined = pipe.refiner.refine(torch.from_numpy(pairs["generated"])).numpy()
    d, ac = pipe.defaults, pipe.audio_codec
    world = WorldConfig(d["width"], d["height"], d["fps"], pairs["truth"].shape[1] / d["fps"], ac.sample_rate)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for point, frames in (("sdedit", pairs["generated"]), ("sdedit+refiner", refined), ("truth", pairs["truth"])):
            for i in range(args.count):
                clip = make_clip(i, "test", world)
                write_sample(dataclasses.replace(clip, frames=frames[i]), Path(tmp) / point, f"{i:03d}")
            report = evaluate_clips(Path(tmp) / point)
            clips = [{"name": Path(c["path"]).name, "metrics": c["metrics"]} for c in report["clips"]]
            rows.append({"point": point, "metrics": report["metrics"], "clips": clips})
            values = [report["metrics"].get(n, {}).get("value", float("nan")) for n in COLUMNS]
            print(f"{point:16s} " + " ".join(f"{v:9.3f}" for v in values), flush=True)
    print("columns:", ", ".join(COLUMNS))
    if args.json:
        args.json.write_text(json.dumps({"count": args.count, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
