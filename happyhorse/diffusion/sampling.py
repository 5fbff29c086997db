"""How a model samples: one typed config, stored in its model directory (`scheduler/config.json`) and
validated here alone, as FLUX's `SamplingOptions` and diffusers' scheduler configs are.

A call may override the step count and the classifier-free guidance scales (`with_overrides`); every
other choice (sampler, schedule shift, restarts, noise correlation, the guidance terms and their noise
intervals) was measured for the model and travels with it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace

from ..retired import read_config
from .guidance import (
    AutoGuidance,
    ClassifierFreeGuidance,
    GuidanceTerm,
    check_interval,
    check_scale,
    guidance_from_dict,
)
from .samplers import SAMPLERS, get_schedule, restart_schedule

MAX_STEPS = 1000
# settings of earlier model directories that were measured and not shipped (docs/experiments.md): read
# where they are off, refused by name where they are on
RETIRED = {
    "guide_skip_blocks": [],
    "guide_frame_local_blocks": [],
    "guidance_drops": [],
    "contrast_guidance_scale": 1.0,
    "contrast_swaps": [],
    "clamp_x0": False,
}


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling settings chosen by measurement for one model."""

    sampler: str = "euler"  # samplers.SAMPLERS
    num_inference_steps: int = 16
    shift: float = 1.0  # schedule shift toward high noise (samplers.get_schedule)
    # restart sampling (Xu et al. 2023): on reaching the low end of `restart_interval`, re-noise to its
    # high end and walk that band again, `restarts` times; each costs the band's steps again
    restarts: int = 0
    restart_interval: tuple[float, float] = (0.5, 0.8)
    # share of the video noise's variance common to every latent frame (PYoCo's mixed noise prior,
    # untrained here): a nudge toward objects that hold together over time; 0 = independent noise
    noise_correlation: float = 0.0
    guidance: tuple[GuidanceTerm, ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        steps = self.num_inference_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise ValueError(f"num_inference_steps: must be an integer in 1..{MAX_STEPS}, got {steps!r}")
        shift = self.shift
        if isinstance(shift, bool) or not (isinstance(shift, int | float) and 0.1 <= shift <= 20):
            raise ValueError(f"shift: must be a number in [0.1, 20], got {shift!r}")
        object.__setattr__(self, "shift", float(shift))
        if not (type(self.restarts) is int and 0 <= self.restarts <= 8):
            raise ValueError(f"restarts: a whole number in [0, 8], got {self.restarts!r}")
        object.__setattr__(self, "restart_interval", check_interval("restart_interval", self.restart_interval, True))
        rho = self.noise_correlation
        if isinstance(rho, bool) or not (isinstance(rho, int | float) and math.isfinite(rho) and 0.0 <= rho < 1.0):
            raise ValueError(f"noise_correlation: must be a number in [0, 1), got {rho!r}")
        object.__setattr__(self, "noise_correlation", float(rho))
        terms = tuple(t if isinstance(t, GuidanceTerm) else guidance_from_dict(t) for t in self.guidance)
        kinds = [t.type for t in terms]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"guidance: at most one term of each type, got {kinds}")
        object.__setattr__(self, "guidance", terms)
        self.schedule()  # a restart band the schedule does not have is refused here, by name

    @property
    def classifier_free(self) -> ClassifierFreeGuidance | None:
        return next((t for t in self.guidance if isinstance(t, ClassifierFreeGuidance) and t.active), None)

    @property
    def autoguidance(self) -> AutoGuidance | None:
        return next((t for t in self.guidance if isinstance(t, AutoGuidance) and t.active), None)

    def schedule(self) -> list[float]:
        """The noise levels the sampler walks: `num_inference_steps` at `shift`, with the restarts."""
        sigmas = get_schedule(self.num_inference_steps, self.shift)
        if not self.restarts:
            return sigmas
        try:
            return restart_schedule(sigmas, *self.restart_interval, self.restarts)
        except ValueError:
            low, high = self.restart_interval
            raise ValueError(
                f"restart_interval: the schedule of {self.num_inference_steps} steps at shift {self.shift:g} has no "
                f"levels between {low} and {high} above 0 ({[round(v, 3) for v in sigmas]}); widen it or set "
                "restarts to 0"
            ) from None

    def with_overrides(
        self,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
    ) -> SamplingConfig:
        """This config with a call's step count and classifier-free guidance scales (None keeps the
        stored one). The stored restart band is dropped where the new step count's schedule has no level
        inside it (the sidecar's `restarts` says so); a guidance scale on a model stored without
        classifier-free guidance adds the term over every noise level."""
        out = self
        if num_inference_steps is not None and num_inference_steps != self.num_inference_steps:
            out = replace(out, num_inference_steps=num_inference_steps, restarts=0)
            # the stored band fits the stored step count; where it does not fit this one, sample without it
            with contextlib.suppress(ValueError):
                out = replace(out, restarts=self.restarts)
        if guidance_scale is None and audio_guidance_scale is None:
            return out
        cfg = next((t for t in out.guidance if isinstance(t, ClassifierFreeGuidance)), ClassifierFreeGuidance())
        new = ClassifierFreeGuidance(
            cfg.scale if guidance_scale is None else check_scale("guidance_scale", guidance_scale),
            cfg.audio_scale
            if audio_guidance_scale is None
            else check_scale("audio_guidance_scale", audio_guidance_scale),
            cfg.interval,
        )
        rest = tuple(t for t in out.guidance if not isinstance(t, ClassifierFreeGuidance))
        return replace(out, guidance=(new, *rest))

    def to_dict(self) -> dict:
        return {
            "sampler": self.sampler,
            "num_inference_steps": self.num_inference_steps,
            "shift": self.shift,
            "restarts": self.restarts,
            "restart_interval": list(self.restart_interval),
            "noise_correlation": self.noise_correlation,
            "guidance": [t.to_dict() for t in self.guidance],
        }

    @classmethod
    def from_dict(cls, d: dict) -> SamplingConfig:
        """A stored config; also the flat form of earlier model directories (`guidance_scale`,
        `autoguidance_scale`, ... beside the sampler's fields), whose retired levers must be off."""
        d = dict(d)
        if "guidance" not in d:
            d["guidance"] = _flat_guidance(d)
        if d.get("contrast_guidance_scale", 1.0) == 1.0:
            d.pop("contrast_swaps", None)  # words for a contrast that was off did nothing
        return cls(**read_config(d, cls, RETIRED, "sampling config"))


def _flat_guidance(d: dict) -> list[dict]:
    """The guidance terms of a flat (earlier) sampling config, popped from it."""
    cfg = {
        "type": ClassifierFreeGuidance.type,
        "scale": d.pop("guidance_scale", 1.0),
        "audio_scale": d.pop("audio_guidance_scale", 1.0),
        "interval": d.pop("guidance_interval", (0.0, 1.0)),
    }
    auto = {
        "type": AutoGuidance.type,
        "scale": d.pop("autoguidance_scale", 1.0),
        "audio_scale": d.pop("audio_autoguidance_scale", 1.0),
        "interval": d.pop("autoguidance_interval", (0.0, 1.0)),
    }
    # autoguidance ran only inside the classifier-free interval too: keep what the old config sampled
    low, high = max(cfg["interval"][0], auto["interval"][0]), min(cfg["interval"][1], auto["interval"][1])
    auto["interval"] = (low, high)
    on = [t for t in (cfg, auto) if (t["scale"], t["audio_scale"]) != (1.0, 1.0)]
    return [t for t in on if t["interval"][0] <= t["interval"][1]]  # disjoint intervals: it never ran


__all__ = ["SamplingConfig"]
