"""Rectified flow: x_sigma = (1 - sigma) x0 + sigma eps, velocity v = eps - x0 (DESIGN.md section 3).

The network may output x0, v or eps (`prediction`); it is always converted to v for the loss, as in
JiT (Li & He 2025), where predicting x0 and training on v works far better for high-dimensional
patch tokens than predicting v directly.
"""

from __future__ import annotations

import torch

SIGMA_FLOOR = 0.05  # x0 -> v divides by sigma, eps -> x0 by (1 - sigma): both are clamped here


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


DATA_STD = 0.5  # assumed spread of clean latents, for the "edm" parameterisation


def edm_coefficients(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of EDM (Karras et al. 2022) for x_sigma = (1 - sigma) x0 + sigma eps.

    x0 = c_skip x_sigma + c_out F: near sigma = 0 it passes the input through, near 1 it is the
    network's x0, and the v error never carries a 1/sigma factor. Uses sigma outside the network only:
    the network itself still sees no timestep.
    """
    alpha = 1 - sigma
    denom = alpha**2 * DATA_STD**2 + sigma**2
    return alpha * DATA_STD**2 / denom, sigma * DATA_STD / denom.sqrt()


def predicted_x0(output: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
    if prediction == "x0":
        return output
    if prediction == "edm":
        c_skip, c_out = edm_coefficients(sigma)
        return c_skip * x_t + c_out * output
    if prediction == "v":
        return x_t - sigma * output
    if prediction == "eps":
        return (x_t - sigma * output) / (1 - sigma).clamp(min=SIGMA_FLOOR)
    raise ValueError(f"prediction must be x0, v or eps, got {prediction!r}")


def predicted_velocity(output: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, prediction: str) -> torch.Tensor:
    if prediction == "v":
        return output
    if prediction == "x0":
        return (x_t - output) / sigma.clamp(min=SIGMA_FLOOR)
    if prediction == "edm":
        return (x_t - predicted_x0(output, x_t, sigma, prediction)) / sigma.clamp(min=1e-4)
    x0 = predicted_x0(output, x_t, sigma, prediction)
    return output - x0


def velocity_error(
    output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, prediction: str
) -> torch.Tensor:
    """The predicted velocity minus the true one, per token and channel, in float32."""
    return predicted_velocity(output.float(), x_t.float(), sigma, prediction) - (noise - x0).float()


def flow_loss(
    output: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    x_t: torch.Tensor,
    sigma: torch.Tensor,
    prediction: str,
    loss_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample mean squared velocity error [B] over tokens where loss_mask [B, N] is True; a float
    loss_mask weights the tokens (a weighted mean).

    Clean (given) tokens carry no loss: they are inputs, not things to denoise.
    """
    return mean_squared_error(velocity_error(output, x0, noise, x_t, sigma, prediction), loss_mask)


def mean_squared_error(error: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean [B] of a [B, N, C] error's squares over tokens (weighted by loss_mask [B, N]):
    the flow loss of an error already at hand."""
    err = error.pow(2).mean(-1)
    if loss_mask is None:
        return err.mean(-1)
    weight = loss_mask.float()
    return (err * weight).sum(-1) / weight.sum(-1).clamp(min=1)
