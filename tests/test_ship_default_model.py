"""scripts/ship_default_model.py and scripts/interpolate_models.py on tiny models: the sampling config and
the guide they store."""

import importlib.util
import sys
from pathlib import Path

import pytest

from happyhorse.components import Components
from happyhorse.diffusion.guidance import AutoGuidance, ClassifierFreeGuidance
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
        _run("ship_default_model", [str(tmp_path / "model"), "--autoguidance", "2", "--out", str(tmp_path / "x")],
             monkeypatch)  # fmt: skip
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    args = [str(tmp_path / "model"), "--guide", str(tmp_path / "weaker"), "--autoguidance", "2", "--guidance", "5"]
    args += ["--autoguidance-interval", "0.5", "1", "--audio-guidance", "3", "--sampler", "dpmpp_2m"]
    _run("ship_default_model", [*args, "--out", str(tmp_path / "shipped")], monkeypatch)
    shipped = Components.from_pretrained(tmp_path / "shipped")
    assert shipped.guide_transformer is not None and shipped.sampling.sampler == "dpmpp_2m"
    assert shipped.sampling.classifier_free == ClassifierFreeGuidance(5.0, 3.0, (0.0, 1.0))
    assert shipped.sampling.autoguidance == AutoGuidance(2.0, 1.0, (0.5, 1.0))
    # --guide-of takes a directory's own guide; one without a guide is refused
    with pytest.raises(SystemExit):
        _run("ship_default_model", [str(tmp_path / "model"), "--guide-of", str(tmp_path / "weaker")], monkeypatch)
    _run("ship_default_model", [str(tmp_path / "model"), "--guide-of", str(tmp_path / "shipped"), "--out",
                                str(tmp_path / "again")], monkeypatch)  # fmt: skip
    assert Components.from_pretrained(tmp_path / "again").guide_transformer is not None


def test_interpolating_drops_the_guide_of_model_a(tmp_path, monkeypatch):
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "a0")
    guided = ["--guide", str(tmp_path / "a0"), "--autoguidance", "2", "--guidance", "4"]
    _run("ship_default_model", [str(tmp_path / "a0"), *guided, "--out", str(tmp_path / "a")], monkeypatch)
    tiny_pipeline(seed=1).save_pretrained(tmp_path / "b")
    _run("interpolate_models", [str(tmp_path / "a"), str(tmp_path / "b"), "2", "--out", str(tmp_path / "f")],
         monkeypatch)  # fmt: skip
    rebuilt = Components.from_pretrained(tmp_path / "f")
    assert rebuilt.guide_transformer is None and rebuilt.sampling.autoguidance is None
    assert rebuilt.sampling.classifier_free.scale == 4.0  # the rest of A's sampling config stays
    assert not (tmp_path / "f" / "guide_transformer").exists()


def test_shipping_stores_restarts_and_refuses_a_bad_band(tmp_path, monkeypatch):
    tiny_pipeline(seed=0).save_pretrained(tmp_path / "model")
    bad = [["--restarts", "1", "--restart-interval", "0.8", "0.5"], ["--steps", "2", "--shift", "2", "--restarts", "1"]]
    for args in bad:  # a reversed band; 2 steps at shift 2: [1, .67, 0], no band above 0
        with pytest.raises(SystemExit) as refused:
            _run("ship_default_model", [str(tmp_path / "model"), *args, "--out", str(tmp_path / "x")], monkeypatch)
        assert refused.value.code == 2 and not (tmp_path / "x").exists()
    args = [str(tmp_path / "model"), "--restarts", "1", "--restart-interval", "0.4", "0.9"]
    _run("ship_default_model", [*args, "--out", str(tmp_path / "shipped")], monkeypatch)
    shipped = Components.from_pretrained(tmp_path / "shipped")
    assert (shipped.sampling.restarts, shipped.sampling.restart_interval) == (1, (0.4, 0.9))
