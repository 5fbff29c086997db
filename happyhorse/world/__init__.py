"""The procedural audio-visual physics world: endless captioned clips with exact ground truth."""

from .physics import SimulationError, Trajectory, simulate
from .sample import WorldConfig, make_clip, write_sample
from .scene import COLOURS, HELD_OUT, MATERIALS, SHAPES, SIZES, ObjectSpec, Scene, is_held_out, sample_scene

__all__ = [
    "COLOURS",
    "HELD_OUT",
    "MATERIALS",
    "SHAPES",
    "SIZES",
    "ObjectSpec",
    "Scene",
    "SimulationError",
    "Trajectory",
    "WorldConfig",
    "is_held_out",
    "make_clip",
    "sample_scene",
    "simulate",
    "write_sample",
]
