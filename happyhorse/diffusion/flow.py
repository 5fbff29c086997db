"""Rectified flow: x_sigma = (1 - sigma) x0 + sigma eps, velocity v = eps - x0 (DESIGN.md section 3).

The network predicts x0 and the loss is on v, as in JiT (Li & He 2025): for high-dimensional patch
tokens this works far better than predicting v (or eps, or EDM's mix) directly, as measured here too
(docs/experiments.md).
"""

from __future__ import annotations

import torch

SIGMA_FLOOR = 0.05  # x0 -> v divides by sigma: clamped here


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Resolution shift (SD3): more tokens carry more redundant signal, so spend more time near noise."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def resolution_shift(num_tokens: int, base_tokens: int = 256, base_shift: float = 1.0, per_doubling: float = 0.5):
    """Shift grows by `per_doubling` each time the token count doubles past `base_tokens`."""
    import math

    return max(base_shift, base_shift + per_doubling * math.log2(max(num_tokens, 1) / base_tokens))


def sample_sigma(
    batch: int, generator: torch.Generator | None = None, mean: float = 0.0, std: float = 1.0, shift: float = 1.0
) -> torch.Tensor:
    """Logit-normal noise levels [batch] in (0, 1) (SD3), then shifted."""
    u = torch.randn(batch, generator=generator) * std + mean
    return shift_sigma(torch.sigmoid(u), shift)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma for sigma broadcastable to x0 (e.g. [B, 1, 1])."""
    return (1 - sigma) * x0 + sigma * noise


def velocity_from_x0(x0: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The velocity eps - x0 that a predicted x0 implies at x_t: (x_t - x0) / sigma, sigma clamped."""
    return (x_t - x0) / sigma.clamp(min=SIGMA_FLOOR)


def flow_loss(
    x0_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    x_t: torch.Tensor,
    sigma: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample mean squared velocity error [B] of the network's x0 over tokens where loss_mask [B, N]
    is True (float32); a float loss_mask weights the tokens (a weighted mean).

    Clean (given) tokens carry no loss: they are inputs, not things to denoise.
    """
    error = velocity_from_x0(x0_pred.float(), x_t.float(), sigma) - (noise - x0).float()
    return mean_squared_error(error, loss_mask)


def mean_squared_error(error: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean [B] of a [B, N, C] error's squares over tokens (weighted by loss_mask [B, N]):
    the flow loss of an error already at hand."""
    err = error.pow(2).mean(-1)
    if loss_mask is None:
        return err.mean(-1)
    weight = loss_mask.float()
    return (err * weight).sum(-1) / weight.sum(-1).clamp(min=1)
