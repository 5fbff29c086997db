"""scripts/device_train.py: several recipes as arms of one device call are refused before anything runs
when they cannot be told apart or cannot train side by side."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "device_train.py"


def run_script(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    return subprocess.run([sys.executable, str(SCRIPT), "60", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--recipe", "configs/default.toml", "configs/default.toml"], "share a file name"),
        (["--recipe", "configs/default.toml", "configs/no_such_recipe.toml"], "not found in the repo"),
        (["--recipe", "configs/default.toml", "configs/default_spatial.toml", "--distill", "4"], "not with"),
    ],
)
def test_arms_that_cannot_train_side_by_side_are_refused_by_name(tmp_path, args, message):
    result = run_script(tmp_path, *args)
    assert result.returncode != 0
    assert "--recipe" in result.stderr and message in result.stderr
    assert not any((tmp_path / "out").iterdir())  # no arm started, nothing written


def load_script():
    spec = importlib.util.spec_from_file_location("device_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_arm_gets_the_shared_options_its_recipe_its_name_and_its_own_output(tmp_path, monkeypatch):
    script = load_script()
    started = []

    class Child:
        def __init__(self, argv, env):
            started.append((argv, env))

        def wait(self):
            return 0

    monkeypatch.setattr(script.subprocess, "Popen", Child)
    monkeypatch.setattr(script, "rebuild_minilm", lambda bundle: set())
    monkeypatch.setattr(script, "ARM_RATES", tmp_path / "rates")
    monkeypatch.setattr(sys, "path", list(sys.path))  # main() puts .gpu/site first for its own process
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    recipes = ["configs/default.toml", "configs/default_spatial.toml"]
    argv = ["device_train.py", "300", "64", "2", "5e-4", "--init", "happyhorse/assets/default_model"]
    monkeypatch.setattr(sys, "argv", [*argv, "--seed", "6", "--warmup", "0", "--workers", "0", "--recipe", *recipes])
    script.main()
    assert len(started) == 2
    for (child, env), recipe, name in zip(started, recipes, ("default", "default_spatial"), strict=True):
        flags = child[2:]
        assert flags[1:3] == ["64", "2"] and float(flags[3]) == 5e-4 and float(flags[0]) <= 300
        pairs = {flags[i]: flags[i + 1] for i in range(4, len(flags) - 1) if flags[i].startswith("--")}
        assert pairs["--seed"] == "6" and pairs["--warmup"] == "0" and pairs["--workers"] == "0"  # 0 is kept
        assert pairs["--init"] == "happyhorse/assets/default_model" and pairs["--arms"] == "2"
        assert pairs["--recipe"] == recipe and pairs["--arm"] == name and "--rate" not in pairs
        assert env["OUT"] == str(tmp_path / "out" / name)


def test_arms_plan_at_the_slowest_bench_rate_once_all_have_one(tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "ARM_RATES", tmp_path)
    (tmp_path / "default.rate").write_text("6.5")
    assert script.slowest_arm_rate("default_spatial", 5.0, arms=2) == 5.0
    assert script.slowest_arm_rate("default_noise_corr", 7.0, arms=3) == 5.0
    # an arm that never reports does not hold the others past the wait
    assert script.slowest_arm_rate("default_text_layers", 4.0, arms=9, wait_s=0) == 4.0
