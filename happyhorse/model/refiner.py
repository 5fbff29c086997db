"""The video refiner: a small convolutional second stage that redraws the sampler's decoded frames.

The default model draws objects as clouds of 8x8 patch cells even when the scene's layout is right:
starting the sampler from a ground-truth clip noised to sigma 0.55-0.93 (SDEdit) gives the truth's
layout back, but still in patchy, split, off-colour cells. That error is local and systematic, so a
network that sees a few patches around each pixel can learn to undo it from (sampled, truth) pairs
(`happyhorse.train.refiner`), the way cascaded image models train a refiner or super-resolution stage
on the first stage's outputs. It works in pixel space, after the video codec, on every frame at once:
a U-Net over (time, height, width) whose 3-frame temporal kernels sit at half and quarter resolution,
where the patch cells are 4 and 2 pixels wide, and whose output head starts at zero, so an untrained
refiner returns its input exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F


@dataclass
class RefinerConfig:
    """channels: widths at full, half and quarter resolution; blocks: residual blocks at half and
    quarter resolution (where the temporal kernels are)."""

    channels: tuple[int, int, int] = (16, 32, 64)
    blocks: tuple[int, int] = (1, 2)

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.blocks = tuple(int(b) for b in self.blocks)
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels: three positive widths (full, half, quarter resolution), got {self.channels}")
        if len(self.blocks) != 2 or min(self.blocks) < 0:
            raise ValueError(f"blocks: two counts >= 0 (half, quarter resolution), got {self.blocks}")

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> RefinerConfig:
        unknown = set(d) - {"channels", "blocks"}
        if unknown:
            raise ValueError(f"refiner config: unknown keys {sorted(unknown)}; allowed: channels, blocks")
        return cls(**d)


class ResidualBlock(nn.Module):
    """x + conv(silu(conv(silu(x)))), 3x3x3 kernels over (time, height, width); no norm layer, so a
    clip's result does not depend on the other clips of its batch."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class VideoRefiner(nn.Module):
    def __init__(self, cfg: RefinerConfig | None = None):
        super().__init__()
        self.cfg = cfg or RefinerConfig()
        c0, c1, c2 = self.cfg.channels
        spatial = dict(kernel_size=(1, 3, 3), padding=(0, 1, 1))
        halve = dict(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.stem = nn.Conv3d(3, c0, **spatial)
        self.down1 = nn.Conv3d(c0, c1, **halve)
        self.enc1 = nn.Sequential(*[ResidualBlock(c1) for _ in range(self.cfg.blocks[0])])
        self.down2 = nn.Conv3d(c1, c2, **halve)
        self.mid = nn.Sequential(*[ResidualBlock(c2) for _ in range(self.cfg.blocks[1])])
        self.up2 = nn.ConvTranspose3d(c2, c1, **halve)
        self.dec1 = ResidualBlock(c1)
        self.up1 = nn.ConvTranspose3d(c1, c0, **halve)
        self.dec0 = nn.Conv3d(2 * c0, c0, **spatial)
        self.head = nn.Conv3d(c0, 3, **spatial)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # PyTorch's default init everywhere, then a zero head: the untrained refiner is the identity
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def save_pretrained(self, directory: str | Path, weights_dtype: torch.dtype = torch.float32) -> Path:
        """config.json + model.safetensors in DIRECTORY (the model directory's refiner/ component)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=1))
        tensors = {k: v.detach().to(weights_dtype).contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / "model.safetensors"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> VideoRefiner:
        directory = Path(directory)
        if not (directory / "config.json").is_file() or not (directory / "model.safetensors").is_file():
            raise FileNotFoundError(f"refiner: {directory} needs config.json and model.safetensors")
        refiner = cls(RefinerConfig.from_dict(json.loads((directory / "config.json").read_text())))
        state = {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
        try:
            refiner.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"refiner: {directory}'s weights do not match its config.json: {exc}") from None
        return refiner.eval()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """float [B, T, H, W, 3] in [-1, 1] -> the same, redrawn; H and W multiples of 4."""
        b, t, h, w, _ = frames.shape
        if h % 4 or w % 4:
            raise ValueError(f"frames: height and width must be multiples of 4, got {h}x{w}")
        x = frames.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        s0 = F.silu(self.stem(x))  # (B, c0, T, H, W)
        s1 = self.enc1(self.down1(s0))  # (B, c1, T, H/2, W/2)
        y = self.mid(self.down2(F.silu(s1)))  # (B, c2, T, H/4, W/4)
        y = self.dec1(self.up2(F.silu(y)) + s1)  # (B, c1, T, H/2, W/2)
        y = F.silu(self.dec0(torch.cat([self.up1(F.silu(y)), s0], dim=1)))  # (B, c0, T, H, W)
        return (x + self.head(y)).permute(0, 2, 3, 4, 1)

    @torch.no_grad()
    def refine(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> uint8 on the CPU, the way the pipeline calls it: computed where the
        refiner's weights are, one clip at a time (its full-resolution activations alone are 32 floats a pixel)."""
        p = next(self.parameters())
        out = []
        for clip in frames:
            y = self.forward(clip[None].to(p.device, p.dtype) / 127.5 - 1.0).float().clamp(-1, 1)
            out.append(((y + 1) * 127.5).round().to(torch.uint8).cpu())
        return torch.cat(out)


__all__ = ["RefinerConfig", "VideoRefiner"]
