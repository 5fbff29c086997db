"""Training: flow matching on world clips, single process or DDP/FSDP under torchrun."""

from .config import PRESETS, TrainConfig, load_config
from .trainer import train

__all__ = ["PRESETS", "TrainConfig", "load_config", "train"]
