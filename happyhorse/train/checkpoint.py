"""Resumable checkpoints: safetensors for every tensor, JSON for the rest, never pickle.

A checkpoint is a directory written beside its final place and renamed over it, so an interrupted
save leaves the previous checkpoint intact:
    model.safetensors, ema.safetensors, optimizer.safetensors (the trained model's),
    NAME.safetensors, optimizer_NAME.safetensors (each other module a run trains: a fake denoiser),
    state.json (step, objective, config, the optimizers' non-tensor state).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..media import atomic_directory

MAIN = "model"  # the trained model's name; its optimizer is optimizer.safetensors and state["optimizer"]


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


def _optimizer_file(name: str) -> str:
    return "optimizer.safetensors" if name == MAIN else f"optimizer_{name}.safetensors"


def save_checkpoint(directory: Path, modules: dict[str, dict], optimizers: dict[str, dict], state: dict) -> None:
    """`modules`: state dicts by name ("model", "ema", others); `optimizers`: optimizer state dicts by
    the name of the module they train. Weights are stored in float32."""
    with atomic_directory(directory) as staging:
        for name, weights in modules.items():
            tensors = {k: v.detach().float().contiguous().cpu() for k, v in weights.items()}
            save_file(tensors, str(staging / f"{name}.safetensors"))
        metas = {}
        for name, opt in optimizers.items():
            tensors, metas[name] = optimizer_tensors(opt)
            save_file(tensors, str(staging / _optimizer_file(name)))
        extra = {k: v for k, v in metas.items() if k != MAIN}
        record = {**state, "optimizer": metas.get(MAIN), **({"optimizers": extra} if extra else {})}
        (staging / "state.json").write_text(json.dumps(record, indent=1))


def load_checkpoint(directory: Path) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """(state dicts by module name, optimizer state dicts by module name, state.json) of a checkpoint."""
    directory = Path(directory)
    state = json.loads((directory / "state.json").read_text())
    metas = {MAIN: state.get("optimizer"), **state.get("optimizers", {})}
    optimizers = {
        name: optimizer_state(load_file(str(directory / _optimizer_file(name))), meta)
        for name, meta in metas.items()
        if meta is not None
    }
    files = {p.name.removesuffix(".safetensors") for p in directory.glob("*.safetensors")}
    modules = {name: load_file(str(directory / f"{name}.safetensors")) for name in files}
    modules = {k: v for k, v in modules.items() if not k.startswith("optimizer")}
    return modules, optimizers, state
