"""bench/size_speed.py: the default's layout at another width and depth, with a guide of its size."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))

from size_speed import parse_size, resized  # noqa: E402

from tests.conftest import tiny_pipeline  # noqa: E402


def test_a_resized_pipeline_keeps_the_latents_and_guides_itself_at_its_size():
    base = tiny_pipeline()
    pipe = resized(base, 128, 3)
    cfg = pipe.transformer.cfg
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.kv_heads, cfg.mlp_hidden) == (128, 3, 2, 1, 384)
    assert (cfg.video_in, cfg.audio_in, cfg.text_in) == (
        base.transformer.cfg.video_in,
        base.transformer.cfg.audio_in,
        base.transformer.cfg.text_in,
    )
    assert pipe.guide_transformer.cfg == cfg and pipe.guide_transformer is not pipe.transformer
    assert base.transformer.cfg.dim == 32 and base.guide_transformer is None  # the base is left as it was
    out = pipe("a red ball", seed=0)
    assert out.frames.shape[2:] == (32, 32, 3) and out.settings["sampling"]["guidance"] == []
    alone = resized(base, 128, 3, guide=False)
    assert alone.guide_transformer is None and alone.sampling.autoguidance is None
    assert alone("a red ball", seed=0).frames.shape == out.frames.shape


def test_sizes_are_parsed_or_refused_by_name():
    assert parse_size("384x8") == (384, 8)
    for bad in ("384", "300x8", "384x1", "big"):
        with pytest.raises(SystemExit, match="--sizes"):
            parse_size(bad)


def test_time_generation_times_the_runs_after_a_warm_up_in_the_pipelines_dtype():
    from generate_speed import time_generation

    pipe = tiny_pipeline().to("cpu", "bfloat16")
    result = time_generation(pipe, 2, "TA2V")
    assert result["repeats"] == 2 and result["mode"] == "TA2V" and result["dtype"] == "bfloat16"
    assert 0 < result["seconds_per_clip_median"] <= result["seconds_per_clip_max"]
    assert result["real_time_factor"] == pytest.approx(result["clip_seconds"] / result["seconds_per_clip_median"])


def test_time_in_turn_runs_each_prompt_on_every_model_in_turn(monkeypatch):
    """Models compared for speed take turns prompt by prompt, so the machine's drift falls on all alike."""
    import dataclasses

    import generate_speed

    first, second = tiny_pipeline(), tiny_pipeline()
    first.sampling = dataclasses.replace(first.sampling, num_inference_steps=2)
    second.sampling = dataclasses.replace(second.sampling, num_inference_steps=3)
    order = []
    real = generate_speed.run_generate

    def recording(pipe, request, output):
        order.append(("first" if pipe is first else "second", request.seed))
        return real(pipe, request, output)

    monkeypatch.setattr(generate_speed, "run_generate", recording)
    results = generate_speed.time_in_turn([first, second], 2)
    assert order == [(name, k) for k in range(3) for name in ("first", "second")]  # prompt 0 warms up
    assert [r["sampling"]["num_inference_steps"] for r in results] == [2, 3]
    assert all(r["repeats"] == 2 and r["seconds_per_clip_median"] > 0 for r in results)
