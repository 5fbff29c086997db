"""Resumable training checkpoints: safetensors for every tensor, JSON for the rest, never pickle.

A checkpoint is a directory written beside its final place and renamed over it, so an interrupted
save leaves the previous checkpoint intact:
    model.safetensors, ema.safetensors, optimizer.safetensors, state.json (config, step, log tail).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into flat tensors and JSON-able metadata."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(directory: Path, model_state: dict, ema_state: dict, optimizer, state: dict) -> None:
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in model_state.items()},
            str(staging / "model.safetensors"),
        )
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in ema_state.items()}, str(staging / "ema.safetensors")
        )
        tensors, meta = optimizer_tensors(optimizer)
        save_file(tensors, str(staging / "optimizer.safetensors"))
        (staging / "state.json").write_text(json.dumps({**state, "optimizer": meta}, indent=1))
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.replace(directory, old)
        os.replace(staging, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_checkpoint(directory: Path) -> tuple[dict, dict, dict[str, torch.Tensor], dict]:
    """(model state, EMA state, optimizer tensors, state.json) of a checkpoint directory."""
    directory = Path(directory)
    state = json.loads((directory / "state.json").read_text())
    return (
        load_file(str(directory / "model.safetensors")),
        load_file(str(directory / "ema.safetensors")),
        load_file(str(directory / "optimizer.safetensors")),
        state,
    )
