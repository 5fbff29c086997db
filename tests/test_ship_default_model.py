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
