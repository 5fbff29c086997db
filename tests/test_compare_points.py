"""bench/compare_points.py: two grid points compared clip by clip with a paired bootstrap."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

spec = importlib.util.spec_from_file_location(
    "compare_points", Path(__file__).resolve().parents[1] / "bench" / "compare_points.py"
)
compare_points = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_points)


def _row(values: dict[str, list[float]], permanence: list[float]) -> dict:
    n = len(permanence)
    clips = []
    for i in range(n):
        metrics = {k: {"value": v[i], "score": v[i]} for k, v in values.items() if v[i] is not None}
        metrics["object_permanence"] = {"value": permanence[i], "score": permanence[i]}
        clips.append({"name": f"{i:03d}_T2V.mp4", "metrics": metrics})
    return {"point": "p", "clips": clips}


def test_a_consistent_gain_is_told_from_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 60)  # prompt-to-prompt spread far larger than the gain
    a = _row({"direction_accuracy": list(base)}, [0.5] * 60)
    b = _row({"direction_accuracy": list(base + 0.02)}, [0.5] * 30 + [1.0] * 30)
    rng = np.random.default_rng(1)
    gain = compare_points.paired(a, b, "direction_accuracy", 500, rng)
    assert gain["clips"] == 60 and gain["diff"] == pytest.approx(0.02) and gain["low"] > 0
    # testing ten metrics at once widens each interval (Bonferroni): never narrower than the 95 % one
    wide = compare_points.paired(a, b, "direction_accuracy", 500, np.random.default_rng(1), family=10)
    assert wide["family_low"] <= wide["low"] and wide["family_high"] >= wide["high"]
    persistence = compare_points.paired(a, b, "object_persistence_rate", 500, rng)
    assert (persistence["a"], persistence["b"]) == (0.0, 0.5)  # clips with permanence >= 0.95
    same = compare_points.paired(a, a, "direction_accuracy", 500, rng)
    assert same["diff"] == 0 and same["low"] == same["high"] == 0
    noisy = _row({"direction_accuracy": list(base + rng.normal(0, 0.3, 60))}, [0.5] * 60)
    spread = compare_points.paired(a, noisy, "direction_accuracy", 500, rng)
    assert spread["low"] < 0 < spread["high"]


def test_clips_without_the_metric_are_left_out_and_bad_specs_refused(tmp_path):
    a = _row({"av_offset_ms": [1.0, None, 0.5]}, [1, 1, 1])
    b = _row({"av_offset_ms": [0.0, 1.0, None]}, [1, 1, 1])
    b["clips"][2]["metrics"]["av_offset_ms"] = {"value": None, "score": None}  # measured as nothing
    r = compare_points.paired(a, b, "av_offset_ms", 200, np.random.default_rng(0))
    assert r["clips"] == 1 and r["diff"] == -1.0
    assert compare_points.paired(a, b, "shape_accuracy", 200, np.random.default_rng(0)) is None
    with pytest.raises(SystemExit, match="FILE.json:ROW"):
        compare_points.load_row("grid.json")
    (tmp_path / "g.json").write_text('{"rows": [{"point": "x", "metrics": {}}]}')
    with pytest.raises(SystemExit, match="per-clip"):
        compare_points.load_row(f"{tmp_path / 'g.json'}:0")
    # rows of two prompt ranges join into one; the same range twice is refused
    import json

    first, more = _row({"shape_accuracy": [1.0]}, [1]), _row({"shape_accuracy": [0.0, 0.0]}, [1, 1])
    more["clips"] = [{**c, "name": f"1{c['name']}"} for c in more["clips"]]
    for name, row in (("a.json", first), ("b.json", more)):
        (tmp_path / name).write_text(json.dumps({"rows": [row]}))
    joined = compare_points.load_rows(f"{tmp_path / 'a.json'}:0,{tmp_path / 'b.json'}:0")
    assert len(joined["clips"]) == 3
    with pytest.raises(SystemExit, match="share clips"):
        compare_points.load_rows(f"{tmp_path / 'a.json'}:0,{tmp_path / 'a.json'}:0")
