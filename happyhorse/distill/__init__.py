"""Few-step distillation of a trained model: DMD-2 (`happyhorse distill`), in training's run loop."""

from .dmd import DistillConfig, distill, dmd_loss, student_sampling

__all__ = ["DistillConfig", "distill", "dmd_loss", "student_sampling"]
