"""bench/ta2v_best_of_k.py: the pooled shares it compares, and its two judges of a candidate."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from happyhorse.pipeline import build_pipeline
from happyhorse.world import WorldConfig, make_clip

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # the bench imports its sibling audio_timing_signal, as when run from bench/
spec = importlib.util.spec_from_file_location("ta2v_best_of_k", BENCH / "ta2v_best_of_k.py")
best_of_k = importlib.util.module_from_spec(spec)
spec.loader.exec_module(best_of_k)


def test_summary_pools_the_first_the_pick_and_the_trackers_best():
    rows = [
        {"candidates": [{"score": 0.1, "hits": [False, False]}, {"score": 0.9, "hits": [True]}]},
        {"candidates": [{"score": 0.5, "hits": [True, True]}, {"score": 0.2, "hits": []}]},
    ]
    summary = best_of_k.summarise(rows)
    assert summary["first_seed"] == pytest.approx(2 / 4)  # F F T T
    assert summary["picked"] == pytest.approx(3 / 3)  # T, then T T
    assert summary["best_by_tracker"] == pytest.approx(3 / 3)
    assert summary["all"] == pytest.approx(3 / 5) and summary["prompts"] == 2


def test_onset_strength_marks_where_a_sound_starts():
    tokens = torch.zeros(6, 4)
    tokens[3:] = 1.0
    strength = best_of_k.onset_strength(tokens)
    assert strength.argmax() == 3 and strength[:3].max() == 0 and strength[4:].max() == 0


def test_the_judges_read_the_video_and_the_sound():
    pipe = build_pipeline(
        "tiny", text_encoder="hash", video_patch=(4, 4, 4), dim=64, depth=2, heads=2, kv_heads=1, mlp_hidden=128
    )
    with torch.no_grad():
        for p in pipe.transformer.audio_out.parameters():  # the zero-initialised head: predict something
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    world = WorldConfig(32, 32, 12.0, 9 / 12, 16000, 1)
    pipe.defaults.update(width=32, height=32, fps=12.0)
    clip, other = make_clip(0, "test", world), make_clip(3, "test", world)
    for how in ("onset", "error"):
        same = best_of_k.score(pipe, clip.frames, clip.caption, clip.audio, how, 0)
        assert np.isfinite(same) and same == best_of_k.score(pipe, clip.frames, clip.caption, clip.audio, how, 0)
        assert same != best_of_k.score(pipe, other.frames, clip.caption, clip.audio, how, 0)  # reads the video
    with pytest.raises(ValueError, match="onset or error"):
        best_of_k.score(pipe, clip.frames, clip.caption, clip.audio, "tracker", 0)
