"""scripts/ship_default_model.py and scripts/interpolate_models.py on tiny models: what a guide does to them."""

import importlib.util
import sys
from pathlib import Path

import pytest

from happyhorse import HappyHorsePipeline
from tests.conftest import tiny_pipeline

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(script: str, argv: list[str], monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location(script, SCRIPTS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [script, *argv])
    module.main()


def test_shipping_with_a_guide_and_refusing_autoguidance_without_one(tmp_path, monkeypatch):
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "model")
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "weaker")
    with pytest.raises(SystemExit) as refused:
        _run(
            "ship_default_model",
            [str(tmp_path / "model"), "--autoguidance", "2", "--out", str(tmp_path / "x")],
            monkeypatch,
        )
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    args = [str(tmp_path / "model"), "--guide", str(tmp_path / "weaker"), "--autoguidance", "2"]
    _run("ship_default_model", [*args, "--out", str(tmp_path / "shipped")], monkeypatch)
    shipped = HappyHorsePipeline.from_pretrained(tmp_path / "shipped")
    assert shipped.guide_transformer is not None and shipped.scheduler.autoguidance_scale == 2.0
    assert shipped("a red ball", seed=0).settings["autoguidance_scale"] == 2.0


def test_interpolating_drops_the_guide_of_model_a(tmp_path, monkeypatch):
    a = tiny_pipeline(seed=0)
    a.set_guide(tiny_pipeline(seed=2).transformer)
    a.scheduler.autoguidance_scale = 2.0
    a.save_pretrained(tmp_path / "a")
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "b")
    _run(
        "interpolate_models", [str(tmp_path / "a"), str(tmp_path / "b"), "2", "--out", str(tmp_path / "f")], monkeypatch
    )
    rebuilt = HappyHorsePipeline.from_pretrained(tmp_path / "f")
    assert rebuilt.guide_transformer is None and rebuilt.scheduler.autoguidance_scale == 1.0
    assert not (tmp_path / "f" / "guide_transformer").exists()


def test_a_guide_that_read_fewer_text_layers_guides_a_model_that_reads_more(tmp_path, monkeypatch):
    """--guide-of takes a directory's own guide; one that read MiniLM layer 6 only is widened (zero
    columns for layer 0) to guide a model reading (0, 6), and computes what it did."""
    import torch

    from happyhorse.model import TransformerConfig
    from happyhorse.pipeline import build_pipeline
    from happyhorse.train.trainer import widen_text_layers

    cfg = TransformerConfig(dim=32, depth=2, sandwich=1, heads=2, kv_heads=1, mlp_hidden=64)
    torch.manual_seed(0)
    narrow = build_pipeline(cfg, scheduler=tiny_pipeline().scheduler)
    narrow.set_guide(build_pipeline(cfg).transformer)
    narrow.save_pretrained(tmp_path / "narrow")
    build_pipeline(cfg, text_layers=(0, 6)).save_pretrained(tmp_path / "wide")
    with pytest.raises(SystemExit):  # tmp_path/wide has no guide of its own
        _run("ship_default_model", [str(tmp_path / "narrow"), "--guide-of", str(tmp_path / "wide")], monkeypatch)
    args = [str(tmp_path / "wide"), "--guide-of", str(tmp_path / "narrow"), "--autoguidance", "2"]
    _run("ship_default_model", [*args, "--out", str(tmp_path / "shipped")], monkeypatch)
    shipped = HappyHorsePipeline.from_pretrained(tmp_path / "shipped")
    guide, original = shipped.guide_transformer, narrow.guide_transformer
    assert guide.cfg.text_in == 768 and original.cfg.text_in == 384
    weight = guide.text_in.weight
    assert torch.equal(weight[:, :384], torch.zeros_like(weight[:, :384]))
    torch.testing.assert_close(weight[:, 384:], original.text_in.weight, atol=1e-3, rtol=1e-3)  # float16 file
    text = torch.randn(1, 5, 768)
    torch.testing.assert_close(guide.text_in(text), original.text_in(text[..., 384:]), atol=1e-3, rtol=1e-3)
    assert shipped("a red ball", seed=0, num_inference_steps=2).settings["autoguidance_scale"] == 2.0
    assert widen_text_layers(original, (6,), (6,)) is original
    with pytest.raises(ValueError, match="read MiniLM layers \\[6\\], not all among text_layers \\[0, 5\\]"):
        widen_text_layers(original, (6,), (0, 5))


def test_shipping_stores_restarts_and_refuses_a_bad_band(tmp_path, monkeypatch):
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit) as refused:
        _run(
            "ship_default_model",
            [
                str(tmp_path / "model"),
                "--restarts",
                "1",
                "--restart-interval",
                "0.8",
                "0.5",
                "--out",
                str(tmp_path / "x"),
            ],
            monkeypatch,
        )
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as refused:  # 2 steps at shift 2: [1, .67, 0], no band above 0
        _run(
            "ship_default_model",
            [str(tmp_path / "model"), "--steps", "2", "--shift", "2", "--restarts", "1", "--out", str(tmp_path / "x")],
            monkeypatch,
        )
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    args = [str(tmp_path / "model"), "--restarts", "1", "--restart-interval", "0.4", "0.9"]
    _run("ship_default_model", [*args, "--out", str(tmp_path / "shipped")], monkeypatch)
    shipped = HappyHorsePipeline.from_pretrained(tmp_path / "shipped")
    assert (shipped.scheduler.restarts, shipped.scheduler.restart_interval) == (1, (0.4, 0.9))
