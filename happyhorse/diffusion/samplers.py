"""Samplers over lists of latent tensors (video, audio), written in terms of the predicted x0.

`denoise(xs, sigma) -> x0s` is the model (with guidance); each sampler is a short loop. Tokens that
are given (a first frame, a soundtrack) are re-imposed after every step through `clean`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .flow import shift_sigma

Tensors = list[torch.Tensor]
Denoise = Callable[[Tensors, float], Tensors]
SAMPLERS = ("euler", "dpmpp_2m", "renoise")


def get_schedule(steps: int, shift: float = 1.0) -> list[float]:
    """steps + 1 noise levels from 1 down to 0, uniform in time, then shifted."""
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_sigma(t, shift).tolist()


def restart_schedule(sigmas: list[float], low: float, high: float, times: int = 1) -> list[float]:
    """The schedule with `times` restarts: on reaching the first level <= `low`, go back up to the first
    level <= `high` and walk the same levels down again. Each restart costs the levels in between as
    extra model steps; it lets the sampler undo errors made in that band (where a scene's layout settles).
    Both levels must lie above 0: a finished sample is not re-noised."""
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"restart: need 0 < low < high < 1, got {low}-{high}")
    if times < 0:
        raise ValueError(f"restart: times must be >= 0, got {times}")
    start = next((i for i, s in enumerate(sigmas) if s <= high), None)
    stop = next((i for i, s in enumerate(sigmas) if s <= low), None)
    if start is None or stop is None or stop <= start or sigmas[stop] <= 0.0:
        raise ValueError(
            f"restart: no schedule levels between {low} and {high} above 0 in {[round(s, 3) for s in sigmas]}"
        )
    band = sigmas[start : stop + 1]
    return sigmas[: stop + 1] + band * times + sigmas[stop + 1 :]


def _impose(xs: Tensors, clean: list[tuple[torch.Tensor, torch.Tensor] | None]) -> Tensors:
    return [x if c is None else torch.where(c[0][..., None], c[1], x) for x, c in zip(xs, clean, strict=True)]


def sample(
    denoise: Denoise,
    noise: Tensors,
    sigmas: list[float],
    method: str = "euler",
    clean: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int], None] | None = None,
    fresh_noise: Callable[[Tensors], Tensors] | None = None,
) -> Tensors:
    """Integrate from sigmas[0] (pure noise) to sigmas[-1] = 0.

    Where the schedule rises (s' > s) no model is called: the state is re-noised to s' with fresh noise
    and the solver starts afresh there (restart sampling, Xu et al. 2023; `restart_schedule`).

    euler: the flow ODE's Euler step (DDIM for flow): x' = x0 + (s'/s)(x - x0).
    dpmpp_2m: DPM-Solver++(2M), second-order multistep in log-SNR, for data prediction.
    renoise: the few-step sampler of distilled models: predict x0, then re-noise it to the next level.

    Re-noising draws its new noise by `fresh_noise(xs)` (noise shaped like xs), so that it
    has the starting noise's structure (e.g. a share common to all latent frames); by default plain
    Gaussian noise from `generator`.
    """
    if method not in SAMPLERS:
        raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}, got {method!r}")
    clean = clean or [None] * len(noise)
    if fresh_noise is None:

        def fresh_noise(xs: Tensors) -> Tensors:
            return [torch.randn(x.shape, generator=generator) for x in xs]

    xs = _impose([n.float() for n in noise], clean)
    previous: Tensors | None = None
    h_prev: float | None = None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        if s_next > s:
            # x_s = (1 - s) x0 + s z, so scaling by (1 - s')/(1 - s) keeps x0's share right and the noise
            # is topped up to s' with independent noise
            a = (1 - s_next) / (1 - s)
            top_up = math.sqrt(max(s_next**2 - (a * s) ** 2, 0.0))
            xs = _impose([a * x + top_up * z for x, z in zip(xs, fresh_noise(xs), strict=True)], clean)
            h_prev, previous = None, None
            if callback is not None:
                callback(i + 1, len(sigmas) - 1)
            continue
        x0s = denoise(xs, s)
        finite = 0.0 < s < 1.0 and s_next > 0.0  # log-SNR is finite at both ends of this step
        h = math.log((1 - s_next) / s_next) - math.log((1 - s) / s) if finite else None
        if method == "renoise":
            xs = [(1 - s_next) * x0 + s_next * z for x0, z in zip(x0s, fresh_noise(x0s), strict=True)]
        elif method == "euler" or h is None or h_prev is None:
            # first order; DPM-Solver++ also takes it for its first step and for the final step to 0
            xs = [x0 + (s_next / s) * (x - x0) for x, x0 in zip(xs, x0s, strict=True)]
        else:
            r = h_prev / h
            ds = [(1 + 1 / (2 * r)) * a - (1 / (2 * r)) * b for a, b in zip(x0s, previous, strict=True)]
            xs = [(s_next / s) * x - (1 - s_next) * math.expm1(-h) * d for x, d in zip(xs, ds, strict=True)]
        h_prev, previous = h, x0s
        xs = _impose(xs, clean)
        if callback is not None:
            callback(i + 1, len(sigmas) - 1)
    return xs
