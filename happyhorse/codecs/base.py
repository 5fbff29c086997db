"""The codec interface: media <-> latent grids, each codec described by a JSON-able config.

A codec turns pixels or waveforms into a latent grid and back; the model only sees the grid's channel
count (`latent_dim`) and shape. A trainable VAE drops in by implementing the same four members and
registering under a new `type`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from safetensors.torch import load_file, save_file
from torch import nn

from ..media import atomic_path


class Codec(nn.Module):
    """Base class of video and audio codecs and text encoders: config round trip and weights."""

    type: ClassVar[str]
    registry: ClassVar[dict[str, type[Codec]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            Codec.registry[cls.type] = cls

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "config.json") as tmp:
            tmp.write_text(json.dumps({"type": self.type, **self.config()}, indent=1))
        state = self.state_dict()
        if state:
            with atomic_path(directory / "model.safetensors") as tmp:
                save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))

    @staticmethod
    def from_pretrained(directory: str | Path) -> Codec:
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text())
        kind = config.pop("type", None)
        if kind not in Codec.registry:
            raise ValueError(f"{directory}/config.json: unknown codec type {kind!r}; known: {sorted(Codec.registry)}")
        codec = Codec.registry[kind](**config)
        weights = directory / "model.safetensors"
        if weights.exists():
            codec.load_state_dict(load_file(str(weights)))
        return codec.eval()
