"""Audio codecs: waveforms float [B, C, N] <-> latent sequences [B, n, D]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .base import Codec


class PatchAudioCodec(Codec):
    """Exact waveform-patch codec: each latent token is `patch` consecutive samples of every channel,
    multiplied by `scale` so that sparse impact sounds are not drowned by unit-variance noise."""

    type = "audio_patch"

    def __init__(self, patch: int = 400, sample_rate: int = 16000, channels: int = 1, scale: float = 3.0):
        super().__init__()
        if patch < 1 or sample_rate < 8000 or channels not in (1, 2) or scale <= 0:
            raise ValueError(
                f"audio codec: need patch >= 1, sample_rate >= 8000, channels 1 or 2, scale > 0; "
                f"got {patch}, {sample_rate}, {channels}, {scale}"
            )
        self.patch, self.sample_rate, self.channels, self.scale = patch, sample_rate, channels, scale

    def config(self) -> dict:
        return {"patch": self.patch, "sample_rate": self.sample_rate, "channels": self.channels, "scale": self.scale}

    @property
    def latent_dim(self) -> int:
        return self.patch * self.channels

    @property
    def seconds_per_token(self) -> float:
        return self.patch / self.sample_rate

    def num_tokens(self, num_samples: int) -> int:
        return -(-num_samples // self.patch)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """float [B, C, N] in [-1, 1] -> [B, ceil(N / patch), C * patch]; the tail is zero-padded."""
        if audio.shape[1] != self.channels:
            raise ValueError(f"audio: expected {self.channels} channel(s), got {audio.shape[1]}")
        pad = (-audio.shape[-1]) % self.patch
        x = F.pad(audio.float(), (0, pad)) * self.scale
        return rearrange(x, "b c (n p) -> b n (c p)", p=self.patch)

    def decode(self, latents: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """[B, n, C * patch] -> float [B, C, num_samples] in [-1, 1]."""
        x = rearrange(latents.float(), "b n (c p) -> b c (n p)", c=self.channels) / self.scale
        if num_samples is not None:
            x = x[..., :num_samples]
        return x.clamp(-1, 1)
