"""Two sampling points compared clip by clip: is B better than A, or is it noise?

    python bench/sampling_defaults.py --model DIR --count 120 --grid dpmpp_2m:8:5 dpmpp_2m:8:5:auto=3 --json g.json
    python bench/compare_points.py g.json:0 g.json:1            # FILE:ROW, rows in grid order
    python bench/compare_points.py a.json:0 b.json:0 --rounds 2000
    python bench/compare_points.py first.json:0,more.json:0 first.json:1,more.json:1   # rows of two prompt ranges

Both points generate the same seeded prompts, so each clip's metric under A and under B form a pair;
the difference of the means is bootstrapped over the clips (pairs resampled together), which removes
the prompt-to-prompt spread that makes two unpaired figures on 120 prompts differ by +-0.05 on their
own. Per-clip figures: each metric's value (for `av_offset_ms`, each clip's share of impacts within
one frame, averaged over clips, where the grid's table pools the impacts of all clips), and
persistence as permanence >= 0.95, as the suite counts it.

Each row shows the 95 % interval of B - A. Ten metrics at once would show some interval clear of 0 by
chance, so `*` marks only a difference whose Bonferroni interval (95 % for the whole table: each at
1 - 0.05 / metrics) excludes 0. `physics_residual_px` is lower-is-better; the rest higher-is-better.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LOWER_IS_BETTER = {"physics_residual_px"}
METRICS = (
    "colour_accuracy",
    "shape_accuracy",
    "direction_accuracy",
    "count_accuracy",
    "motion_accuracy",
    "object_persistence_rate",
    "object_permanence",
    "av_offset_ms",
    "subject_consistency_proxy",
    "physics_residual_px",
)


def clip_value(metrics: dict, name: str) -> float | None:
    """One clip's figure of a metric, or None where the clip has none (e.g. no impact to time)."""
    if name == "object_persistence_rate":
        m = metrics.get("object_permanence")
        return None if m is None else float(m["value"] >= 0.95)
    m = metrics.get(name)
    value = None if m is None else m["score"] if name == "av_offset_ms" else m["value"]
    return None if value is None else float(value)  # a clip may carry a metric it could not measure


def load_rows(specs: str) -> dict:
    """FILE:ROW[,FILE:ROW...]: one grid row, or rows of several prompt ranges joined into one."""
    rows = [load_row(spec) for spec in specs.split(",")]
    clips = [c for r in rows for c in r["clips"]]
    if len({c["name"] for c in clips}) != len(clips):
        raise SystemExit(f"{specs}: the rows share clips; join rows of different prompt ranges only")
    return {"point": " + ".join(r["point"] for r in rows), "clips": clips}


def load_row(spec: str) -> dict:
    path, _, row = spec.rpartition(":")
    if not path or not row.isdigit():
        raise SystemExit(f"expected FILE.json:ROW (a row number of the grid, from 0), got {spec!r}")
    data = json.loads(Path(path).read_text())
    rows = data.get("rows", [])
    if int(row) >= len(rows) or "clips" not in rows[int(row)]:
        raise SystemExit(f"{spec}: no row {row} with per-clip metrics ({len(rows)} rows; rerun sampling_defaults.py)")
    return rows[int(row)]


def clip_pairs(a: dict, b: dict, name: str) -> np.ndarray:
    """[clips, 2]: the metric under A and under B, for the clips that have it under both."""
    by_name = {c["name"]: c["metrics"] for c in b["clips"]}
    pairs = [
        (va, vb)
        for c in a["clips"]
        if c["name"] in by_name
        for va, vb in [(clip_value(c["metrics"], name), clip_value(by_name[c["name"]], name))]
        if va is not None and vb is not None
    ]
    return np.array(pairs).reshape(-1, 2)


def paired(a: dict, b: dict, name: str, rounds: int, rng: np.random.Generator, family: int = 1) -> dict | None:
    """Means under A and B over the clips both have, and B - A with a 95 % paired bootstrap interval
    (`low`, `high`) and its Bonferroni widening for `family` simultaneous metrics (`family_low/high`)."""
    x = clip_pairs(a, b, name)
    if not len(x):
        return None
    diff = x[:, 1] - x[:, 0]
    boot = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(1)
    tail = 2.5 / family
    low, high, family_low, family_high = np.percentile(boot, [2.5, 97.5, tail, 100 - tail])
    return {
        "clips": len(x),
        "a": x[:, 0].mean(),
        "b": x[:, 1].mean(),
        "diff": diff.mean(),
        "low": low,
        "high": high,
        "family_low": family_low,
        "family_high": family_high,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="FILE.json:ROW of bench/sampling_defaults.py --json (or several, comma-separated)")
    parser.add_argument("b", help="FILE.json:ROW[,...], the same prompts under other settings or another model")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap resamples (>= 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rounds < 100:
        parser.error(f"--rounds: at least 100, got {args.rounds}")
    a, b = load_rows(args.a), load_rows(args.b)
    rng = np.random.default_rng(args.seed)
    print(f"A = {a['point']}, B = {b['point']}")
    names = [n for n in METRICS if len(clip_pairs(a, b, n))]
    print(
        f"{'metric':26s} {'clips':>5s} {'A':>7s} {'B':>7s} {'B - A':>7s}  95 % interval"
        f"  (* Bonferroni over {len(names)})"
    )
    for name in names:
        r = paired(a, b, name, args.rounds, rng, family=len(names))
        clear = r["family_low"] > 0 or r["family_high"] < 0
        better = (r["diff"] < 0) == (name in LOWER_IS_BETTER)
        mark = (" * B better" if better else " * B worse") if clear else ""
        print(
            f"{name:26s} {r['clips']:5d} {r['a']:7.3f} {r['b']:7.3f} {r['diff']:+7.3f}"
            f"  [{r['low']:+.3f}, {r['high']:+.3f}]{mark}"
        )


if __name__ == "__main__":
    main()
