"""Training the learned video codec (`happyhorse train-codec`) on world clips, in the shared run loop.

The autoencoder learns to reconstruct 4-frame cells of train-split clips through a bottleneck of a
few dozen numbers per cell, with noise on its latents (so that the decoder also draws clean frames
from the slightly-off latents a sampler ends at; the noise also caps what each number can carry) and
a reconstruction loss weighted towards the objects' pixels (~3 % of a frame, and all that a prompt
is about). Each export measures the latents' per-channel mean and spread, which `encode` divides
out, and writes a codec directory (`RUN/codec`) that `video_codec` in a training config names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..codecs import AutoencoderVideoCodec
from ..media import write_json_atomic
from ..world import WorldConfig, make_clip
from ..world.sample import OBJECT_COVERAGE
from . import harness
from .config import RunConfig, read_config_file
from .data import loader

VALIDATION_SEEDS = range(16)  # test-split clips for the reconstruction figures
STATS_SEEDS = range(2**30, 2**30 + 64)  # train-split clips for the latent statistics (no step draws these)


@dataclass
class CodecTrainConfig(RunConfig):
    patch: tuple[int, int, int] = (4, 8, 8)
    latent_channels: int = 16
    channels: tuple[int, ...] = (32, 64, 96, 128)
    per_frame: bool = False  # code each frame of a cell alone (latent_channels / patch_t numbers each)
    width: int = 64
    height: int = 64
    fps: float = 12.0
    num_frames: int = 25
    clips_per_step: int = 4
    ema_decay: float = 0.999
    num_workers: int = 0
    max_steps: int = 3000
    # Gaussian noise added to the raw latents in training, relative to their RMS
    latent_noise: float = 0.1
    # a pixel's loss weight is 1 + this x the share of it that objects cover ...
    object_weight: float = 10.0
    # ... the most any object covers within this many pixels of it: a weight on the object alone makes
    # painting object colour past its edge cheap (1) and missing an object pixel dear (1 + w), so the
    # codec grows a halo that rounds boxes and triangles into balls; weighting both sides keeps the edge
    object_margin: int = 0
    # weight of the loss on the error's horizontal and vertical differences: L1/L2 alone let edges blur
    edge_weight: float = 0.0

    RETIRED = {"adversarial_start": 0, "adversarial_weight": 0.1}  # a patch discriminator: docs/experiments.md

    def __post_init__(self):
        super().__post_init__()
        self.patch, self.channels = tuple(self.patch), tuple(self.channels)
        if (self.num_frames - 1) % self.patch[0] or self.width % self.patch[2] or self.height % self.patch[1]:
            raise ValueError(
                f"num_frames - 1, height and width must be multiples of patch {self.patch}, "
                f"got {self.num_frames}, {self.height}, {self.width}"
            )
        if self.clips_per_step < 1:
            raise ValueError(f"clips_per_step must be >= 1, got {self.clips_per_step}")
        if self.latent_noise < 0 or self.object_weight < 0 or self.edge_weight < 0 or self.object_margin < 0:
            raise ValueError(
                f"latent_noise, object_weight, object_margin and edge_weight must be >= 0, got "
                f"{self.latent_noise}, {self.object_weight}, {self.object_margin}, {self.edge_weight}"
            )

    @classmethod
    def old_precision(cls, cuda: bool) -> str:
        return "float32"  # codec runs computed in float32 everywhere before `precision` existed

    def build(self) -> AutoencoderVideoCodec:
        return AutoencoderVideoCodec(
            *self.patch, latent_channels=self.latent_channels, channels=self.channels, per_frame=self.per_frame
        )


def load_codec_config(path: str | Path, overrides: dict | None = None) -> CodecTrainConfig:
    return CodecTrainConfig.from_dict({**read_config_file(path), **(overrides or {})})


def world_of(cfg: CodecTrainConfig) -> WorldConfig:
    return WorldConfig(cfg.width, cfg.height, cfg.fps, cfg.num_frames / cfg.fps)


def step_generator(cfg: CodecTrainConfig, step: int) -> tuple[torch.Generator, list[int]]:
    """A step's random stream and the world seeds of its clips (drawn first from that stream)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    return g, torch.randint(0, 2**30, (cfg.clips_per_step,), generator=g).tolist()


class CodecBatches(torch.utils.data.IterableDataset):
    """{step, frames, coverage} for steps [start, end), in order; worker w of W renders steps
    start + w, start + w + W, ... and the loader takes one from each in turn (as StepBatches does)."""

    def __init__(self, cfg: CodecTrainConfig, start: int, end: int):
        self.cfg, self.start, self.end = cfg, start, end

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.end, stride):
            frames, coverage = clip_batch(self.cfg, step_generator(self.cfg, step)[1], "train")
            yield {"step": step, "frames": frames, "coverage": coverage}


def clip_batch(cfg: CodecTrainConfig, seeds, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames uint8 [B, T, H, W, 3] and object coverage in [0, 1] [B, T, H, W] of world clips."""
    clips = [make_clip(int(s), split, world_of(cfg), ground_truth=False, object_coverage=True) for s in seeds]
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    coverage = torch.from_numpy(np.stack([c.meta[OBJECT_COVERAGE] for c in clips])).float() / 255
    return frames, coverage


def object_loss_weight(coverage: torch.Tensor, object_weight: float, margin: int = 0) -> torch.Tensor:
    """1 + object_weight x the most that objects cover within `margin` pixels: [B, T, H, W]."""
    if margin > 0:
        b, t, h, w = coverage.shape
        near = F.max_pool2d(coverage.reshape(b * t, 1, h, w), 2 * margin + 1, stride=1, padding=margin)
        coverage = near.reshape(b, t, h, w)
    return 1 + object_weight * coverage


def reconstruction_loss(
    codec: AutoencoderVideoCodec,
    frames,
    coverage,
    object_weight: float,
    noise: float,
    generator=None,
    edge_weight: float = 0.0,
    object_margin: int = 0,
) -> torch.Tensor:
    """Object-weighted L1 + L2 of the decoded cells, with relative Gaussian noise on the latents, plus
    `edge_weight` x the object-weighted L1 of the error's differences between neighbouring pixels."""
    cells = codec.to_cells(frames)  # [N, pt * 3, H, W] in [-1, 1]
    weight = codec.repeat_first(object_loss_weight(coverage, object_weight, object_margin))  # [B, T', H, W]
    weight = weight.reshape(cells.shape[0], codec.patch_t, 1, *cells.shape[2:])
    z = codec.encode_cells(cells)
    if noise > 0:
        rms = z.detach().pow(2).mean().sqrt()
        z = z + noise * rms * torch.randn(z.shape, generator=generator).to(z.device)
    err = (codec.decode_cells(z) - cells).reshape(cells.shape[0], codec.patch_t, 3, *cells.shape[2:])
    loss = (weight * (err.abs() + err.square())).mean() / weight.mean()
    if edge_weight > 0:
        dx, dy = err.diff(dim=-1).abs(), err.diff(dim=-2).abs()
        wx, wy = weight[..., :, 1:], weight[..., 1:, :]
        loss = loss + edge_weight * ((wx * dx).mean() / wx.mean() + (wy * dy).mean() / wy.mean())
    return loss


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error over 8-bit pixels."""
    return 10 * math.log10(255**2 / max(mse, 1e-10))


@torch.no_grad()
def validate(codec: AutoencoderVideoCodec, cfg: CodecTrainConfig) -> dict:
    """PSNR of reconstructed test-split clips, over all pixels and over the objects' pixels."""
    frames, coverage = clip_batch(cfg, VALIDATION_SEEDS, "test")
    decoded = torch.cat([codec.decode(codec.encode(frames[i : i + 4])) for i in range(0, len(frames), 4)])
    on = coverage > 0.5
    err = (decoded.float() - frames.float()).square().mean(-1)
    return {"psnr": psnr(err.mean().item()), "object_psnr": psnr(err[on].mean().item()) if on.any() else float("nan")}


@torch.no_grad()
def measure_latent_stats(codec: AutoencoderVideoCodec, cfg: CodecTrainConfig) -> None:
    """Set latent_mean / latent_std from train-split clips."""
    zs = []
    for i in range(0, len(STATS_SEEDS), 8):
        frames, _ = clip_batch(cfg, STATS_SEEDS[i : i + 8], "train")
        zs.append(codec.encode_cells(codec.to_cells(frames)))
    z = torch.cat(zs).transpose(0, 1).reshape(codec.latent_channels, -1)
    codec.latent_mean.copy_(z.mean(1))
    codec.latent_std.copy_(z.std(1).clamp_min(1e-4))


class CodecReconstruction(harness.Objective):
    """The codec's objective: the reconstruction loss; the export is the EMA codec with its latent
    statistics (`RUN/codec`) and its validation figures (also in log.jsonl)."""

    name = "video_codec"

    def __init__(self, cfg: CodecTrainConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        torch.manual_seed(cfg.seed)
        self.model = cfg.build().train().to(device)

    def optimizers(self):
        return {
            "model": torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        }

    def batches(self, start, end, rank, world_size):
        return loader(CodecBatches(self.cfg, start, end), self.cfg.num_workers)

    def loss(self, net, batch):
        cfg = self.cfg
        g, _ = step_generator(cfg, batch["step"])  # the stream the loader drew this step's clips from
        frames, coverage = batch["frames"].to(self.device), batch["coverage"].to(self.device)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=harness.autocasts(cfg.precision, self.device)):
            loss = reconstruction_loss(
                net, frames, coverage, cfg.object_weight, cfg.latent_noise, g, cfg.edge_weight, cfg.object_margin
            )
        return loss, {}

    def export(self, ema_state, out):
        """Validation and latent statistics on the CPU, so that figures compare across devices."""
        codec = self.cfg.build()
        codec.load_state_dict(ema_state)
        measure_latent_stats(codec, self.cfg)
        figures = validate(codec, self.cfg)
        codec.save_pretrained(out / "codec")
        write_json_atomic(out / "codec" / "validation.json", json.dumps(figures, indent=1))
        return out / "codec", figures


def train_codec(
    cfg: CodecTrainConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    log=print,
    progress=None,
    init_from: str | Path | None = None,
    device: str | None = None,
) -> dict:
    """Train until max_steps (or `minutes`); writes OUT/config.json, log.jsonl, checkpoint/ and codec/.

    `init_from` continues another codec run (its checkpoint's weights, optimizer and step) under this
    config's losses and schedule, in a new OUT: how a converged codec is sharpened by edge or margin
    terms without touching the run it came from. `device` (default: CUDA where there is one) is where
    the codec trains."""
    cfg = harness.resolve_config(cfg, Path(out), resume, log)
    objective = CodecReconstruction(cfg, torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    return harness.run(
        objective, out, resume=resume, max_steps=max_steps, minutes=minutes, start_from=init_from, log=log,
        progress=progress,
    )  # fmt: skip


__all__ = ["CodecTrainConfig", "load_codec_config", "psnr", "reconstruction_loss", "train_codec", "validate"]
