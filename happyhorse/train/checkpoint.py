"""Resumable training checkpoints: safetensors for every tensor, JSON for the rest, never pickle.

A checkpoint is a directory written beside its final place and renamed over it, so an interrupted
save leaves the previous checkpoint intact:
    model.safetensors, ema.safetensors, optimizer.safetensors, state.json (config, step, log tail).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..media import atomic_directory


def optimizer_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors and JSON-able metadata.

    Parameters are keyed by index (torch.optim) or by name (FSDP's full state dict): "KEY::slot".
    """
    tensors, scalars = {}, {}
    for param, slots in state["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{param}::{slot}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{param}::{slot}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """The inverse of `optimizer_tensors`."""
    state: dict = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        param, slot = name.rsplit("::", 1)
        state.setdefault(int(param) if param.isdigit() else param, {})[slot] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory: Path, model_state: dict, ema_state: dict, optimizer_state_dict: dict, state: dict
) -> None:
    with atomic_directory(directory) as staging:
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in model_state.items()},
            str(staging / "model.safetensors"),
        )
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in ema_state.items()}, str(staging / "ema.safetensors")
        )
        tensors, meta = optimizer_tensors(optimizer_state_dict)
        save_file(tensors, str(staging / "optimizer.safetensors"))
        (staging / "state.json").write_text(json.dumps({**state, "optimizer": meta}, indent=1))


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
