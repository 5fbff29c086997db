"""Training: one run loop (harness.py) for flow matching (trainer.py), the learned video codec (codec.py)
and DMD-2 distillation (happyhorse/distill); single process, or DDP/FSDP under torchrun."""

from .config import PRESETS, RunConfig, TrainConfig, load_config
from .harness import Objective, run
from .trainer import train

__all__ = ["PRESETS", "Objective", "RunConfig", "TrainConfig", "load_config", "run", "train"]
