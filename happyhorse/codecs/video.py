"""Video codecs: frames uint8 [B, T, H, W, 3] <-> latent grids [B, t, h, w, C]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .base import Codec


class VideoGrid:
    """What every video codec shares: a latent cell covers pt x ph x pw pixels, and frame 0 is encoded
    alone (repeated pt times), so clips have 1 + k * pt frames."""

    patch_t: int
    patch_h: int
    patch_w: int

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

    def repeat_first(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, ...] -> [B, T - 1 + pt, ...]: frame 0 repeated pt times, a latent frame of its own."""
        return torch.cat([x[:, :1].expand(-1, self.patch_t, *x.shape[2:]), x[:, 1:]], dim=1)

    def merge_first(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `repeat_first`: the pt decoded copies of frame 0 averaged."""
        return torch.cat([x[:, : self.patch_t].mean(dim=1, keepdim=True), x[:, self.patch_t :]], dim=1)

    def pool(self, values: torch.Tensor) -> torch.Tensor:
        """Per-pixel values [B, T, H, W] -> their mean over each latent cell [B, t, h, w] (frame 0
        alone, as in encode): e.g. the share of a cell's pixels that show an object."""
        b, t, h, w = values.shape
        self.check_size(t, h, w)
        return rearrange(
            self.repeat_first(values.float()),
            "b (t pt) (h ph) (w pw) -> b t h w (pt ph pw)",
            pt=self.patch_t,
            ph=self.patch_h,
            pw=self.patch_w,
        ).mean(-1)


class PatchVideoCodec(VideoGrid, Codec):
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

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 or float in [0, 255] [B, T, H, W, 3] -> float [B, t, h, w, C] in [-1, 1]."""
        b, t, h, w, _ = frames.shape
        self.check_size(t, h, w)
        x = self.repeat_first(frames.float() / 127.5 - 1.0)
        return rearrange(
            x, "b (t pt) (h ph) (w pw) c -> b t h w (pt ph pw c)", pt=self.patch_t, ph=self.patch_h, pw=self.patch_w
        )

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """float [B, t, h, w, C] -> uint8 [B, 1 + (t - 1) * pt, H, W, 3]."""
        x = rearrange(
            latents.float(),
            "b t h w (pt ph pw c) -> b (t pt) (h ph) (w pw) c",
            pt=self.patch_t,
            ph=self.patch_h,
            pw=self.patch_w,
        )
        return ((self.merge_first(x).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a residual; the second conv starts at zero (an identity block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, channels), nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


class AutoencoderVideoCodec(VideoGrid, Codec):
    """Learned codec: each latent cell is C numbers that a small CNN encodes from, and decodes to, a
    pt x ph x pw block of pixels, seeing the blocks around it.

    Why: with the exact patch codec the transformer's linear head paints each 8 x 8 x 4 block on its
    own, and generated objects come out blocky and split into pieces (docs/experiments.md). A decoder with a
    receptive field across blocks draws whole, sharp shapes from a few numbers per cell, which leaves
    the transformer a target of a few dozen numbers per token instead of 768 (the Wan / LTX video VAE idea, here a
    2-D CNN over the pt frames of a cell stacked as channels: the transformer already models time).
    It is a deterministic autoencoder trained with noise on its latents (`happyhorse train-codec`), so
    the decoder also draws clean frames from the slightly-off latents a sampler ends at; encode
    returns latents normalised per channel (`latent_mean`, `latent_std`, measured after training) to
    the unit variance flow matching assumes.
    """

    type = "video_autoencoder"

    def __init__(
        self,
        patch_t: int = 4,
        patch_h: int = 8,
        patch_w: int = 8,
        latent_channels: int = 16,
        channels: tuple[int, ...] | list[int] = (32, 64, 96, 128),
        per_frame: bool = False,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if patch_h != patch_w or patch_h != 2 ** (len(channels) - 1):
            raise ValueError(
                f"patch_h/patch_w must both equal 2 ** (len(channels) - 1) = {2 ** (len(channels) - 1)}, "
                f"got {patch_h}/{patch_w}"
            )
        if patch_t < 1 or latent_channels < 1 or any(c < 8 or c % 8 for c in channels):
            raise ValueError(
                f"need patch_t >= 1, latent_channels >= 1 and channels multiples of 8, "
                f"got {patch_t}, {latent_channels}, {channels}"
            )
        self.patch_t, self.patch_h, self.patch_w = patch_t, patch_h, patch_w
        if per_frame and latent_channels % patch_t:
            raise ValueError(f"per_frame: latent_channels ({latent_channels}) must be a multiple of patch_t {patch_t}")
        self.latent_channels, self.channels, self.per_frame = latent_channels, channels, per_frame
        # per frame: each frame of a cell is coded alone to latent_channels / pt numbers, stacked into one cell
        pixels, code = (3, latent_channels // patch_t) if per_frame else (3 * patch_t, latent_channels)
        enc: list[nn.Module] = [nn.Conv2d(pixels, channels[0], 3, padding=1)]
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            enc += [ResBlock(c_in), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)]
        enc += [ResBlock(channels[-1]), nn.GroupNorm(8, channels[-1]), nn.SiLU()]
        enc += [nn.Conv2d(channels[-1], code, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(code, channels[-1], 3, padding=1), ResBlock(channels[-1])]
        for c_in, c_out in zip(channels[::-1], channels[::-1][1:], strict=False):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1), ResBlock(c_out)]
        dec += [nn.GroupNorm(8, channels[0]), nn.SiLU(), nn.Conv2d(channels[0], pixels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def config(self) -> dict:
        return {
            "patch_t": self.patch_t,
            "patch_h": self.patch_h,
            "patch_w": self.patch_w,
            "latent_channels": self.latent_channels,
            "channels": list(self.channels),
            "per_frame": self.per_frame,
        }

    @property
    def latent_dim(self) -> int:
        return self.latent_channels

    def to_cells(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 or float in [0, 255] [B, T, H, W, 3] -> [B * t, pt * 3, H, W] in [-1, 1], frame 0 alone."""
        b, t, h, w, _ = frames.shape
        self.check_size(t, h, w)
        x = self.repeat_first(frames.float() / 127.5 - 1.0)
        return rearrange(x, "b (t pt) h w c -> (b t) (pt c) h w", pt=self.patch_t)

    def encode_cells(self, cells: torch.Tensor) -> torch.Tensor:
        """[N, pt * 3, H, W] -> raw (unnormalised) latents [N, C, h, w]."""
        if self.per_frame:
            z = self.encoder(rearrange(cells, "n (pt c) h w -> (n pt) c h w", pt=self.patch_t))
            return rearrange(z, "(n pt) c h w -> n (pt c) h w", pt=self.patch_t)
        return self.encoder(cells)

    def decode_cells(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw latents [N, C, h, w] -> [N, pt * 3, H, W], unclamped (for losses)."""
        if self.per_frame:
            x = self.decoder(rearrange(latents, "n (pt c) h w -> (n pt) c h w", pt=self.patch_t))
            return rearrange(x, "(n pt) c h w -> n (pt c) h w", pt=self.patch_t)
        return self.decoder(latents)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> normalised latents float [B, t, h, w, C]."""
        b = frames.shape[0]
        with torch.no_grad():
            z = self.encode_cells(self.to_cells(frames.to(self.latent_mean.device)))
        z = (z - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]
        return rearrange(z, "(b t) c h w -> b t h w c", b=b).to(frames.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, t, h, w, C] -> uint8 [B, 1 + (t - 1) * pt, H, W, 3] on the CPU."""
        b = latents.shape[0]
        z = rearrange(latents.float().to(self.latent_mean.device), "b t h w c -> (b t) c h w")
        z = z * self.latent_std[:, None, None] + self.latent_mean[:, None, None]
        with torch.no_grad():
            cells = self.decode_cells(z)
        x = rearrange(cells, "(b t) (pt c) h w -> b (t pt) h w c", b=b, pt=self.patch_t)
        return ((self.merge_first(x).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
