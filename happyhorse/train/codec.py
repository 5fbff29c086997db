"""Training the learned video codec (`happyhorse train-codec`) on world clips, resumable.

The autoencoder learns to reconstruct 4-frame cells of train-split clips through a bottleneck of a
few dozen numbers per cell, with noise on its latents (so that the decoder also draws clean frames
from the slightly-off latents a sampler ends at; the noise also caps what each number can carry) and
a reconstruction loss weighted towards the objects' pixels (~3 % of a frame, and all that a prompt
is about). Each checkpoint measures the latents' per-channel mean and spread, which `encode` divides
out, and writes a codec directory that `video_codec` in a training config names.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..codecs import AutoencoderVideoCodec
from ..media import write_json_atomic
from ..world import WorldConfig, make_clip
from ..world.sample import OBJECT_COVERAGE
from .checkpoint import load_checkpoint, optimizer_state, save_checkpoint
from .config import precision_problem, read_config_file
from .trainer import autocasts, update_ema, warmup_cosine_lr

VALIDATION_SEEDS = range(16)  # test-split clips for the reconstruction figures
STATS_SEEDS = range(2**30, 2**30 + 64)  # train-split clips for the latent statistics (no step draws these)


@dataclass
class CodecTrainConfig:
    patch: tuple[int, int, int] = (4, 8, 8)
    latent_channels: int = 16
    channels: tuple[int, ...] = (32, 64, 96, 128)
    per_frame: bool = False  # code each frame of a cell alone (latent_channels / patch_t numbers each)
    width: int = 64
    height: int = 64
    fps: float = 12.0
    num_frames: int = 25
    clips_per_step: int = 4
    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 3000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    # Gaussian noise added to the raw latents in training, relative to their RMS
    latent_noise: float = 0.1
    # a pixel's loss weight is 1 + this x the share of it that objects cover
    object_weight: float = 10.0
    # ... the most any object covers within this many pixels of it: a weight on the object alone makes
    # painting object colour past its edge cheap (1) and missing an object pixel dear (1 + w), so the
    # codec grows a halo that rounds boxes and triangles into balls; weighting both sides keeps the
    # edge where it is
    object_margin: int = 0
    # weight of the loss on the error's horizontal and vertical differences: L1/L2 alone let edges blur
    # (a blurred box loses its corners, a blurred triangle its point), this term pays for each soft edge
    edge_weight: float = 0.0
    # a patch discriminator on decoded frames from this step on (0 = never): reconstruction losses
    # alone settle on the mean of what a latent could be, a blurred object; the discriminator pays for
    # outlines that real frames have (the VQGAN / SD-VAE recipe, here on a converged codec)
    adversarial_start: int = 0
    # the adversarial term's share of the reconstruction gradient at the decoder's last layer
    adversarial_weight: float = 0.1
    seed: int = 0
    log_every: int = 20
    checkpoint_every: int = 200
    # processes rendering world clips ahead of the step (0: in the training process); a GPU needs them,
    # the clips and so the run are the same for any number
    num_workers: int = 0
    # what the codec's forward computes in (bfloat16 autocast; the loss and weights stay float32), as
    # TrainConfig.precision: auto is bfloat16 on a GPU and on a CPU with native bfloat16 (1.7x the steps
    # a second here). A run saved before this existed ran in float32 and resumes so
    precision: str = "auto"

    def __post_init__(self):
        self.patch, self.channels = tuple(self.patch), tuple(self.channels)
        if problem := precision_problem(self.precision):
            raise ValueError(f"precision {problem}")
        if (self.num_frames - 1) % self.patch[0] or self.width % self.patch[2] or self.height % self.patch[1]:
            raise ValueError(
                f"num_frames - 1, height and width must be multiples of patch {self.patch}, "
                f"got {self.num_frames}, {self.height}, {self.width}"
            )
        if self.clips_per_step < 1 or self.max_steps < 1 or self.lr <= 0 or self.num_workers < 0:
            raise ValueError("clips_per_step and max_steps must be >= 1, lr > 0 and num_workers >= 0")
        if self.adversarial_start < 0 or self.adversarial_weight < 0:
            raise ValueError(
                f"adversarial_start and adversarial_weight must be >= 0, "
                f"got {self.adversarial_start}, {self.adversarial_weight}"
            )
        if self.latent_noise < 0 or self.object_weight < 0 or self.edge_weight < 0 or self.object_margin < 0:
            raise ValueError(
                f"latent_noise, object_weight, object_margin and edge_weight must be >= 0, got "
                f"{self.latent_noise}, {self.object_weight}, {self.object_margin}, {self.edge_weight}"
            )

    def build(self) -> AutoencoderVideoCodec:
        return AutoencoderVideoCodec(
            *self.patch, latent_channels=self.latent_channels, channels=self.channels, per_frame=self.per_frame
        )

    @classmethod
    def from_dict(cls, d: dict) -> CodecTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown codec config keys: {sorted(unknown)}; known: {sorted(f.name for f in fields(cls))}"
            )
        return cls(**d)


def load_codec_config(path: str | Path, overrides: dict | None = None) -> CodecTrainConfig:
    return CodecTrainConfig.from_dict({**read_config_file(path), **(overrides or {})})


def world_of(cfg: CodecTrainConfig) -> WorldConfig:
    return WorldConfig(cfg.width, cfg.height, cfg.fps, cfg.num_frames / cfg.fps)


def step_generator(cfg: CodecTrainConfig, step: int) -> tuple[torch.Generator, list[int]]:
    """A step's random stream and the world seeds of its clips (drawn first from that stream)."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    return g, torch.randint(0, 2**30, (cfg.clips_per_step,), generator=g).tolist()


class CodecBatches(torch.utils.data.IterableDataset):
    """(step, frames, coverage) for steps [start, end), in order; worker w of W renders steps
    start + w, start + w + W, ... and the loader takes one from each in turn (as StepBatches does)."""

    def __init__(self, cfg: CodecTrainConfig, start: int, end: int):
        self.cfg, self.start, self.end = cfg, start, end

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.end, stride):
            yield (step, *clip_batch(self.cfg, step_generator(self.cfg, step)[1], "train"))


def clip_batch(cfg: CodecTrainConfig, seeds, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames uint8 [B, T, H, W, 3] and object coverage in [0, 1] [B, T, H, W] of world clips."""
    clips = [make_clip(int(s), split, world_of(cfg), ground_truth=False, object_coverage=True) for s in seeds]
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    coverage = torch.from_numpy(np.stack([c.meta[OBJECT_COVERAGE] for c in clips])).float() / 255
    return frames, coverage


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
    return reconstruct(codec, frames, coverage, object_weight, noise, generator, edge_weight, object_margin)[0]


def object_loss_weight(coverage: torch.Tensor, object_weight: float, margin: int = 0) -> torch.Tensor:
    """1 + object_weight x the most that objects cover within `margin` pixels: [B, T, H, W]."""
    if margin > 0:
        b, t, h, w = coverage.shape
        near = F.max_pool2d(coverage.reshape(b * t, 1, h, w), 2 * margin + 1, stride=1, padding=margin)
        coverage = near.reshape(b, t, h, w)
    return 1 + object_weight * coverage


def reconstruct(codec, frames, coverage, object_weight, noise, generator=None, edge_weight=0.0, object_margin=0):
    """(reconstruction loss, decoded cells, true cells): the cells [N, pt * 3, H, W] in [-1, 1]."""
    cells = codec.to_cells(frames)
    weight = codec.repeat_first(object_loss_weight(coverage, object_weight, object_margin))  # [B, T', H, W]
    weight = weight.reshape(cells.shape[0], codec.patch_t, 1, *cells.shape[2:])
    z = codec.encode_cells(cells)
    if noise > 0:
        rms = z.detach().pow(2).mean().sqrt()
        z = z + noise * rms * torch.randn(z.shape, generator=generator).to(z.device)
    decoded = codec.decode_cells(z)
    err = (decoded - cells).reshape(cells.shape[0], codec.patch_t, 3, *cells.shape[2:])
    loss = (weight * (err.abs() + err.square())).mean() / weight.mean()
    if edge_weight > 0:
        dx, dy = err.diff(dim=-1).abs(), err.diff(dim=-2).abs()
        wx, wy = weight[..., :, 1:], weight[..., 1:, :]
        loss = loss + edge_weight * ((wx * dx).mean() / wx.mean() + (wy * dy).mean() / wy.mean())
    return loss, decoded, cells


class PatchDiscriminator(nn.Module):
    """Real or decoded, per ~22 x 22-pixel patch of a frame (the size of the world's largest objects).

    Three strided convolutions and a 1-channel head, no normalisation layers: batches mix real and
    decoded frames only through the loss."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 1, 3, padding=1),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> logits [N, 1, H / 4, W / 4]."""
        return self.net(frames)


def as_frames(cells: torch.Tensor, patch_t: int) -> torch.Tensor:
    """[N, pt * 3, H, W] -> [N * pt, 3, H, W]."""
    return cells.reshape(cells.shape[0] * patch_t, 3, *cells.shape[2:])


def adaptive_weight(rec_loss, adv_loss, last: torch.Tensor, weight: float) -> torch.Tensor:
    """`weight` x |grad of rec_loss| / |grad of adv_loss| at the decoder's last layer (VQGAN's rule):
    the adversarial term keeps a fixed share of the decoder's update whatever the losses' scales."""
    rec = torch.autograd.grad(rec_loss, last, retain_graph=True)[0].norm()
    adv = torch.autograd.grad(adv_loss, last, retain_graph=True)[0].norm()
    return (weight * rec / (adv + 1e-6)).clamp(max=1e4).detach()


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
    """Train until max_steps (or `minutes`); writes OUT/config.json, log.jsonl, checkpoint/ and codec/
    (the EMA codec with its latent statistics: what a diffusion config's `video_codec` names).

    `init_from` continues another run (its checkpoint's weights, optimizer and step) under this config's
    losses and schedule, in a new OUT: how a converged codec is sharpened by edge, margin or adversarial
    terms without touching the run it came from. `device` (default: CUDA where there is one) is where
    the codec trains; validation and latent statistics run on the CPU, so figures compare across devices."""
    out = Path(out)
    ckpt = out / "checkpoint"
    if resume and (out / "config.json").exists():
        saved = {"precision": "float32", **json.loads((out / "config.json").read_text())}  # older runs: float32
        cfg = CodecTrainConfig.from_dict(saved)
    torch.manual_seed(cfg.seed)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    codec = cfg.build().train().to(device)
    ema = copy.deepcopy(codec).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(codec.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = 0
    source = ckpt if resume and (ckpt / "state.json").exists() else None
    if source is None and init_from is not None:
        source = Path(init_from) / "checkpoint"
        if not (source / "state.json").exists():
            raise FileNotFoundError(f"init_from: {init_from} is not a codec run directory (no checkpoint/)")
    if source is not None:
        model_state, ema_state, opt_tensors, state = load_checkpoint(source)
        try:
            codec.load_state_dict(model_state)
        except RuntimeError as exc:
            raise ValueError(f"init_from: {init_from}'s codec does not match this config's: {exc}") from None
        ema.load_state_dict(ema_state)
        optimizer.load_state_dict(optimizer_state(opt_tensors, state["optimizer"]))
        step = state["step"]
        log(f"resumed from step {step}" if source == ckpt else f"continuing {init_from} from step {step}")
    disc, disc_optimizer = None, None
    if cfg.adversarial_start > 0:
        disc = PatchDiscriminator().to(device)
        disc_optimizer = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
        if resume and (out / "discriminator" / "state.json").exists():
            disc_state, _, disc_opt_tensors, disc_meta = load_checkpoint(out / "discriminator")
            disc.load_state_dict(disc_state)
            disc_optimizer.load_state_dict(optimizer_state(disc_opt_tensors, disc_meta["optimizer"]))
            if disc_meta["step"] != step:
                log(f"discriminator checkpoint is from step {disc_meta['step']}, the codec's from {step}")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", json.dumps(asdict(cfg), indent=1))
    if step == 0 and (out / "log.jsonl").exists():
        (out / "log.jsonl").unlink()
    end = min(max_steps or cfg.max_steps, cfg.max_steps)
    if step >= end:
        log(
            f"nothing to train: the codec is at step {step} and max_steps is {cfg.max_steps} "
            "(to go on: a new run with --init RUN --set max_steps=N)"
        )
        return {}
    started, window, disc_window, summary = time.perf_counter(), [], [], {}
    cast = autocasts(cfg, device)
    loader = torch.utils.data.DataLoader(
        CodecBatches(cfg, step, end),
        batch_size=None,
        num_workers=cfg.num_workers,
        multiprocessing_context="spawn" if cfg.num_workers else None,  # never fork a process with threads
    )
    batches = iter(loader)
    while step < end:
        g, _ = step_generator(cfg, step)  # the same stream the loader drew this step's clips from
        rendered, frames, coverage = next(batches)
        if rendered != step:
            raise RuntimeError(f"the clip loader delivered step {rendered} for step {step}")
        frames, coverage = frames.to(device, non_blocking=True), coverage.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = warmup_cosine_lr(cfg, step)
        adversarial = disc is not None and step >= cfg.adversarial_start
        with torch.autocast(device.type, torch.bfloat16, enabled=cast):  # the losses come out float32
            loss, decoded, cells = reconstruct(
                codec, frames, coverage, cfg.object_weight, cfg.latent_noise, g, cfg.edge_weight, cfg.object_margin
            )
            if adversarial:
                fake = as_frames(decoded, codec.patch_t)
                disc.requires_grad_(False)
                fool = -disc(fake).float().mean()
        if adversarial:
            share = adaptive_weight(loss, fool, codec.decoder[-1].weight, cfg.adversarial_weight)
            disc_window.append([fool.item(), share.item()])
            loss = loss + share * fool
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), cfg.grad_clip)
        optimizer.step()
        update_ema(ema, codec, step, cfg.ema_decay)
        if adversarial:  # hinge loss: real frames above +1, decoded ones below -1
            disc.requires_grad_(True)
            real = as_frames(cells, codec.patch_t)
            with torch.autocast(device.type, torch.bfloat16, enabled=cast):
                scores = disc(real).float(), disc(fake.detach()).float()
            disc_loss = F.relu(1 - scores[0]).mean() + F.relu(1 + scores[1]).mean()
            disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            disc_optimizer.step()
            disc_window[-1].append(disc_loss.item())
        step += 1
        window.append(loss.item())
        if progress:
            progress(step, end)
        out_of_time = minutes is not None and time.perf_counter() - started > minutes * 60
        if step % cfg.log_every == 0 or step == end:
            record = {"step": step, "loss": float(np.mean(window)), "lr": warmup_cosine_lr(cfg, step - 1)}
            if disc_window:
                fool, share, disc_loss = np.mean(disc_window, axis=0)
                record.update(adversarial_loss=fool, adversarial_share=share, discriminator_loss=disc_loss)
            record["elapsed_s"] = time.perf_counter() - started
            window, disc_window = [], []
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            summary = record
        if step % cfg.checkpoint_every == 0 or step == end or out_of_time:
            if disc is not None:
                disc_state = disc_optimizer.state_dict()
                save_checkpoint(out / "discriminator", disc.state_dict(), {}, disc_state, {"step": step})
            figures = {"step": step, **_save(cfg, out, codec, ema, optimizer, step)}
            with open(out / "log.jsonl", "a") as f:  # the validation curve beside the loss curve
                f.write(json.dumps(figures) + "\n")
            summary = {**summary, **figures}
            log(json.dumps(summary))
        if out_of_time:
            log(f"stopping after {minutes} minutes at step {step}")
            break
    return summary


def _save(cfg, out: Path, codec, ema, optimizer, step: int) -> dict:
    """Checkpoint, then the EMA codec with measured latent statistics as OUT/codec; its figures."""
    save_checkpoint(out / "checkpoint", codec.state_dict(), ema.state_dict(), optimizer.state_dict(), {"step": step})
    export = copy.deepcopy(ema).cpu()
    measure_latent_stats(export, cfg)
    figures = validate(export, cfg)
    export.save_pretrained(out / "codec")
    write_json_atomic(out / "codec" / "validation.json", json.dumps({"step": step, **figures}, indent=1))
    return figures


__all__ = ["CodecTrainConfig", "load_codec_config", "reconstruction_loss", "train_codec", "validate"]
