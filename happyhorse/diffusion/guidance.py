"""Guidance terms: how a guided x0 is made from the model's predictions, each term with its own scales and
noise-level interval, as diffusers' guiders and FLUX's sampling options keep them apart from the sampler.

A term is stored in a model directory's sampling config as `{"type": ..., "scale", "audio_scale",
"interval"}`; video and sound have their own scale, since they tolerate different pushes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

Tensors = list[torch.Tensor]  # [video, audio]
MAX_SCALE = 30.0


def check_scale(name: str, value) -> float:
    """A guidance scale: a finite number in [0, MAX_SCALE]; 1 leaves the prediction as it is."""
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value)):
        raise ValueError(f"{name}: must be a number in [0, {MAX_SCALE:g}], got {value!r}")
    if not 0.0 <= value <= MAX_SCALE:
        raise ValueError(f"{name}: must be a number in [0, {MAX_SCALE:g}], got {value}")
    return float(value)


def check_interval(name: str, value, open_ends: bool = False) -> tuple[float, float]:
    """[low, high] noise levels: 0 <= low <= high <= 1 (0 < low < high < 1 with `open_ends`)."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: two numbers [low, high], got {value!r}") from None
    if open_ends and not 0.0 < low < high < 1.0:
        raise ValueError(f"{name}: need 0 < low < high < 1, got {[low, high]}")
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"{name}: need 0 <= low <= high <= 1, got {[low, high]}")
    return low, high


@dataclass(frozen=True)
class GuidanceTerm:
    """One push on the conditional prediction c, per modality: x0 += (scale - 1)(c - other), applied at
    noise levels inside `interval` only (Kynkaenniemi et al. 2024: guidance in a limited interval)."""

    scale: float = 1.0  # video; 1 = off
    audio_scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    type = "term"

    def __post_init__(self):
        object.__setattr__(self, "scale", check_scale(f"{self.type}.scale", self.scale))
        object.__setattr__(self, "audio_scale", check_scale(f"{self.type}.audio_scale", self.audio_scale))
        object.__setattr__(self, "interval", check_interval(f"{self.type}.interval", self.interval))

    @property
    def active(self) -> bool:
        return (self.scale, self.audio_scale) != (1.0, 1.0)

    def applies(self, sigma: float) -> bool:
        return self.active and self.interval[0] <= sigma <= self.interval[1]

    def to_dict(self) -> dict:
        return {"type": self.type, **asdict(self), "interval": list(self.interval)}


@dataclass(frozen=True)
class ClassifierFreeGuidance(GuidanceTerm):
    """Classifier-free guidance (Ho & Salimans 2022): away from the prediction for the empty prompt u,
    x0 = u + scale (c - u); one extra (batched) forward per step where it applies."""

    type = "classifier_free"

    def combine(self, cond: Tensors, uncond: Tensors) -> Tensors:
        return [u + w * (c - u) for c, u, w in zip(cond, uncond, (self.scale, self.audio_scale), strict=True)]


@dataclass(frozen=True)
class AutoGuidance(GuidanceTerm):
    """Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"): away
    from a weaker model's conditional prediction g (the model directory's `guide_transformer/`),
    x0 += (scale - 1)(c - g); one forward of the guide per step where it applies."""

    type = "autoguidance"

    def combine(self, x0: Tensors, cond: Tensors, guide: Tensors) -> Tensors:
        scales = (self.scale, self.audio_scale)
        return [x + (a - 1) * (c - g) for x, c, g, a in zip(x0, cond, guide, scales, strict=True)]


GUIDANCE_TYPES = {t.type: t for t in (ClassifierFreeGuidance, AutoGuidance)}


def guidance_from_dict(d: dict) -> GuidanceTerm:
    """A stored term; its type named, its fields checked."""
    if not isinstance(d, dict) or d.get("type") not in GUIDANCE_TYPES:
        got = d.get("type") if isinstance(d, dict) else d
        raise ValueError(f"guidance: each term needs a type in {sorted(GUIDANCE_TYPES)}, got {got!r}")
    cls = GUIDANCE_TYPES[d["type"]]
    unknown = set(d) - {"type", "scale", "audio_scale", "interval"}
    if unknown:
        raise ValueError(f"guidance: {d['type']} has no field {sorted(unknown)}; it takes scale, audio_scale, interval")
    return cls(**{k: v for k, v in d.items() if k != "type"})
