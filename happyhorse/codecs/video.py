"""Video codecs: frames uint8 [B, T, H, W, 3] <-> latent grids [B, t, h, w, C]."""

from __future__ import annotations

import torch
from einops import rearrange

from .base import Codec


class PatchVideoCodec(Codec):
    """Exact patch codec: each latent cell holds the pixels of a pt x ph x pw block, scaled to [-1, 1].

    Like the causal video VAEs of Wan and LTX, frame 0 is encoded on its own (repeated pt times into
    the first latent frame), so a given first image is exactly latent frame 0, and clips have
    1 + k * pt frames. Decoding averages the repeats of frame 0. Lossless up to float rounding.
    """

    type = "video_patch"

    def __init__(self, patch_t: int = 4, patch_h: int = 8, patch_w: int = 8):
        super().__init__()
        if min(patch_t, patch_h, patch_w) < 1:
            raise ValueError(f"patch sizes must be >= 1, got {(patch_t, patch_h, patch_w)}")
        self.patch_t, self.patch_h, self.patch_w = patch_t, patch_h, patch_w

    def config(self) -> dict:
        return {"patch_t": self.patch_t, "patch_h": self.patch_h, "patch_w": self.patch_w}

    @property
    def latent_dim(self) -> int:
        return self.patch_t * self.patch_h * self.patch_w * 3

    def num_frames(self, frames: int) -> int:
        """The nearest valid frame count >= frames (1 + k * pt)."""
        return 1 + self.patch_t * max(0, -(-(frames - 1) // self.patch_t))

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        self.check_size(frames, height, width)
        return 1 + (frames - 1) // self.patch_t, height // self.patch_h, width // self.patch_w

    def check_size(self, frames: int, height: int, width: int) -> None:
        if (frames - 1) % self.patch_t:
            raise ValueError(f"num_frames: must be 1 + a multiple of {self.patch_t}, got {frames}")
        if height % self.patch_h or width % self.patch_w:
            raise ValueError(
                f"height/width: must be multiples of {self.patch_h}/{self.patch_w} pixels, got {height}x{width}"
            )

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 or float in [0, 255] [B, T, H, W, 3] -> float [B, t, h, w, C] in [-1, 1]."""
        b, t, h, w, _ = frames.shape
        self.check_size(t, h, w)
        x = frames.float() / 127.5 - 1.0
        x = torch.cat([x[:, :1].expand(-1, self.patch_t, -1, -1, -1), x[:, 1:]], dim=1)  # frame 0 alone
        return rearrange(
            x, "b (t pt) (h ph) (w pw) c -> b t h w (pt ph pw c)", pt=self.patch_t, ph=self.patch_h, pw=self.patch_w
        )

    def pool(self, values: torch.Tensor) -> torch.Tensor:
        """Per-pixel values [B, T, H, W] -> their mean over each latent cell [B, t, h, w] (frame 0
        alone, as in encode): e.g. the share of a token's pixels that show an object."""
        b, t, h, w = values.shape
        self.check_size(t, h, w)
        x = values.float()
        x = torch.cat([x[:, :1].expand(-1, self.patch_t, -1, -1), x[:, 1:]], dim=1)
        return rearrange(
            x, "b (t pt) (h ph) (w pw) -> b t h w (pt ph pw)", pt=self.patch_t, ph=self.patch_h, pw=self.patch_w
        ).mean(-1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """float [B, t, h, w, C] -> uint8 [B, 1 + (t - 1) * pt, H, W, 3]."""
        x = rearrange(
            latents.float(),
            "b t h w (pt ph pw c) -> b (t pt) (h ph) (w pw) c",
            pt=self.patch_t,
            ph=self.patch_h,
            pw=self.patch_w,
        )
        first = x[:, : self.patch_t].mean(dim=1, keepdim=True)
        x = torch.cat([first, x[:, self.patch_t :]], dim=1)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
