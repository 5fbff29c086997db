"""The sampler's starting noise, drawn from a seeded CPU generator so a seed gives the same clip anywhere."""

from __future__ import annotations

import math

import torch


def share_over_time(noise: torch.Tensor, grid: tuple[int, int, int], rho: float, generator) -> torch.Tensor:
    """Video noise [B, t*h*w, C] -> the same marginals (unit variance), with a share `rho` of each
    element's variance common to all t latent frames at its (h, w, channel): correlation rho between
    any two frames' noise at one place; drawn on the noise's device."""
    b, n, c = noise.shape
    t, h, w = grid
    shared = torch.randn(b, 1, h * w, c, generator=generator, device=noise.device)
    own = noise.reshape(b, t, h * w, c)
    return (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own).reshape(b, n, c)


def initial_noise(
    batch: int, grid: tuple[int, int, int], video_dim: int, num_audio: int, audio_dim: int, rho: float, generator
) -> list[torch.Tensor]:
    """The sampler's starting noise [video, audio] from a seeded generator: video, then audio, then (rho
    > 0) the part shared over time, drawn after the rest so that rho = 0 keeps every seed's clip."""
    noise = [
        torch.randn(batch, grid[0] * grid[1] * grid[2], video_dim, generator=generator),
        torch.randn(batch, num_audio, audio_dim, generator=generator),
    ]
    if rho > 0:
        noise[0] = share_over_time(noise[0], grid, rho, generator)
    return noise
