"""scripts/device_train.py: several recipes as arms of one device call are refused before anything runs
when they cannot be told apart or cannot train side by side."""

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
