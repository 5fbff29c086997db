"""Flow matching: noise, loss, and samplers (Euler, DPM-Solver++(2M), re-noising few-step)."""

from .flow import (
    add_noise,
    flow_loss,
    mean_squared_error,
    resolution_shift,
    sample_sigma,
    shift_sigma,
    velocity_from_x0,
)
from .samplers import SAMPLERS, get_schedule, restart_schedule, sample

__all__ = [
    "SAMPLERS",
    "add_noise",
    "flow_loss",
    "get_schedule",
    "mean_squared_error",
    "resolution_shift",
    "restart_schedule",
    "sample",
    "sample_sigma",
    "shift_sigma",
    "velocity_from_x0",
]
