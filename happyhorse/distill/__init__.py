"""Few-step distillation of a trained model: DMD-2 (`happyhorse distill`)."""

from .dmd import DistillConfig, distill, dmd_loss

__all__ = ["DistillConfig", "distill", "dmd_loss"]
