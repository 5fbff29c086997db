"""scripts/device_train.py: a run's EMA weights go out in shards (what a lent GPU machine can send back)
and come back here as a model directory whose loss on fresh clips is the device's."""

import importlib.util
import json
from pathlib import Path

import torch

from happyhorse.components import Components
from happyhorse.train import TrainConfig, train
from tests.conftest import TINY_RUN

SCRIPT = Path(__file__).parent.parent / "scripts" / "device_train.py"
SMALL = {**TINY_RUN, "batch_size": 4, "warmup_steps": 2, "log_every": 1, "precision": "float32"}


def test_shards_sent_back_assemble_into_the_runs_model(tmp_path):
    spec = importlib.util.spec_from_file_location("device_train", SCRIPT)
    device_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_train)
    train(TrainConfig.from_dict({**SMALL, "max_steps": 3}), tmp_path / "run", log=lambda *a: None)
    sent = tmp_path / "sent"
    sent.mkdir()
    device_train.export(tmp_path / "run", sent, "final")
    assert len(list(sent.glob("ema_*.safetensors"))) == 3 and (sent / "config.json").is_file()
    assert "final step 3" in (sent / "exported.txt").read_text()
    device_train.assemble(sent, tmp_path / "back")  # raises SystemExit if the loss here is not the device's
    back = Components.from_pretrained(tmp_path / "back" / "model").transformer.state_dict()
    there = Components.from_pretrained(tmp_path / "run" / "model").transformer.state_dict()
    assert back.keys() == there.keys() and all(torch.equal(back[k], there[k]) for k in back)
    assert json.loads((tmp_path / "back" / "config.json").read_text())["max_steps"] == 3
