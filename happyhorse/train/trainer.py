"""Flow-matching training of the single-stream model on world clips: one process, or DDP/FSDP
under `torchrun`.

Everything random in a step is a function of (seed, step, global sample index): which clips, which
noise level, which noise, whether the prompt is dropped, whether the first frame or the soundtrack is
given. So a resumed run continues the same loss curve exactly, and N processes with batch B compute
the same gradients as one process with batch N x B.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..codecs.video import PatchVideoCodec
from ..diffusion import (
    add_noise,
    difference_loss,
    flow_loss,
    mean_squared_error,
    predicted_x0,
    shift_sigma,
    velocity_error,
)
from ..media import Clip, write_json_atomic
from ..model import SingleStreamTransformer
from ..pipeline import (
    LEFT_RIGHT,
    HappyHorsePipeline,
    SchedulerConfig,
    build_pipeline,
    resolve_dtype,
    sequence_positions,
    share_over_time,
    swap_words,
)
from ..world import WorldConfig, make_clip
from ..world.sample import AUDIBLE_IMPACTS, OBJECT_COVERAGE, SHIFTED_AUDIO
from .checkpoint import load_checkpoint, optimizer_state, save_checkpoint
from .config import TrainConfig, precision_of_old_runs

SIGMA_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
SAMPLE_PROMPT_SEEDS = (0, 1, 2, 3)  # test-split clips whose captions (and first frames) are sampled


# ------------------------------------------------------------------------------------------ data


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one training sample, from (run seed, step, global sample index)."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def clip_seed(cfg: TrainConfig, step: int, index: int, global_batch: int) -> int:
    """World seed of a training sample: every (step, index) sees a new clip, for 2^31 clips."""
    return (cfg.seed * 7919 + step * global_batch + index) % (2**31)


class StepBatches(IterableDataset):
    """World clips for steps [start, end) of one process: rank r takes samples [rB, (r+1)B).

    With several loader workers, worker w renders steps start + w, start + w + W, ...; the loader
    takes one batch from each worker in turn, so steps still arrive in order, each once. With
    `clip_repeats` R, sample i shows clip i // R (its noise, noise level and conditions are still its
    own): rendering is what limits a GPU run, and a clip seen at R noise levels is not R clips' cost.
    """

    def __init__(self, cfg: TrainConfig, start: int, end: int, rank: int = 0, world_size: int = 1):
        self.cfg, self.start, self.end, self.rank, self.world_size = cfg, start, end, rank, world_size
        self.world = WorldConfig(cfg.width, cfg.height, cfg.fps, cfg.seconds, cfg.sample_rate, cfg.channels)

    def __iter__(self):
        cfg, b, r = self.cfg, self.cfg.batch_size, self.cfg.clip_repeats
        info = get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.end, stride):
            indices = range(self.rank * b, (self.rank + 1) * b)
            clips = {}
            for i in indices:
                if i // r not in clips and not (cfg.mirror_pairs and (i // r) % 2):
                    seed = clip_seed(cfg, step, i // r, b * self.world_size // r)
                    clips[i // r] = make_clip(
                        seed,
                        "train",
                        self.world,
                        ground_truth=False,
                        object_coverage=cfg.object_loss_weight > 0,
                        sound_shift_s=sound_shift(cfg, seed) if cfg.audio_contrast_weight > 0 else None,
                    )
            if cfg.mirror_pairs:  # each odd clip is the one before it, mirrored: a pair that differs in direction
                clips.update({j + 1: mirrored(clip) for j, clip in list(clips.items())})
            shown = [clips[i // r] for i in indices]
            batch = {
                "step": step,
                "indices": list(indices),
                "video": torch.from_numpy(np.stack([c.frames for c in shown])),
                "audio": torch.from_numpy(np.stack([c.audio for c in shown])),
                "captions": [c.caption for c in shown],
            }
            if cfg.object_loss_weight > 0:
                batch["objects"] = torch.from_numpy(np.stack([c.meta[OBJECT_COVERAGE] for c in shown]))
            if cfg.audio_contrast_weight > 0:
                batch["audio_shifted"] = torch.from_numpy(np.stack([c.meta[SHIFTED_AUDIO] for c in shown]))
                batch["audible"] = torch.tensor([c.meta[AUDIBLE_IMPACTS] > 0 for c in shown])
            yield batch


def sound_shift(cfg: TrainConfig, seed: int) -> float:
    """How far (seconds, either way) a clip's impacts move in its contrastive negative sound."""
    rng = np.random.default_rng([cfg.seed, seed, 13])
    low, high = cfg.audio_contrast_shift
    return float(rng.choice([-1.0, 1.0]) * rng.uniform(low, high))


def mirrored(clip: Clip) -> Clip:
    """The clip mirrored left to right, its caption's "left" and "right" exchanged and its stereo
    channels swapped: the world is left-right symmetric (walls, gravity, sound panning), so this is
    another clip of the world that differs from the first in direction alone."""
    meta = dict(clip.meta)
    if OBJECT_COVERAGE in meta:
        meta[OBJECT_COVERAGE] = np.ascontiguousarray(meta[OBJECT_COVERAGE][..., ::-1])
    if "captions" in meta:
        meta["captions"] = [swap_words(text, LEFT_RIGHT) for text in meta["captions"]]
    if SHIFTED_AUDIO in meta and meta[SHIFTED_AUDIO].shape[0] == 2:
        meta[SHIFTED_AUDIO] = np.ascontiguousarray(meta[SHIFTED_AUDIO][::-1])
    return replace(
        clip,
        frames=np.ascontiguousarray(clip.frames[:, :, ::-1]),
        audio=np.ascontiguousarray(clip.audio[::-1] if clip.audio.shape[0] == 2 else clip.audio),
        caption=swap_words(clip.caption, LEFT_RIGHT),
        meta=meta,
    )


# ------------------------------------------------------------------------------------------ step


@dataclass
class StepInputs:
    video_x0: torch.Tensor  # [B, Nv, Cv]
    audio_x0: torch.Tensor  # [B, Na, Ca]
    video_t: torch.Tensor
    audio_t: torch.Tensor
    video_noise: torch.Tensor
    audio_noise: torch.Tensor
    sigma: torch.Tensor  # [B]
    video_clean: torch.Tensor  # [B, Nv] bool
    audio_clean: torch.Tensor  # [B, Na] bool
    text: torch.Tensor
    text_mask: torch.Tensor
    positions: torch.Tensor
    video_weight: torch.Tensor | None = None  # [B, Nv] loss weight per video token (None: all 1)
    audio_shifted: torch.Tensor | None = None  # [B, Na, Ca] the clips' time-shifted sound (audio contrast)
    audible: torch.Tensor | None = None  # [B] bool: the clip's sound has an impact (audio contrast)
    # the latent grid (t, h, w) and its cells' pixels (pt, ph, pw), for the difference loss
    video_cells: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None
    # [B] bool: the samples a self-conditioning model is given its own detached x0 estimate (else zeros)
    self_condition: torch.Tensor | None = None


def prepare_step(cfg: TrainConfig, pipe: HappyHorsePipeline, batch: dict, device) -> StepInputs:
    """Encode a batch and draw its per-sample noise level, noise, prompt dropout and conditions.

    On a GPU the noise is drawn there, from a generator seeded by the sample's own: one sample's
    noise on the CPU is ~0.3 M numbers, and a batch of them would cost the GPU step several times."""
    device = torch.device(device)
    vc, ac = pipe.video_codec, pipe.audio_codec
    b = batch["video"].shape[0]
    grid = vc.latent_shape(*batch["video"].shape[1:4])
    video_x0 = vc.encode(batch["video"].to(device, non_blocking=True)).reshape(b, -1, vc.latent_dim)
    audio_x0 = ac.encode(batch["audio"].to(device, non_blocking=True))
    nv, na = video_x0.shape[1], audio_x0.shape[1]
    sigmas, vnoise, anoise, prompts, estimate = [], [], [], [], []
    vclean = torch.zeros(b, nv, dtype=torch.bool)
    aclean = torch.zeros(b, na, dtype=torch.bool)
    for k, index in enumerate(batch["indices"]):
        g = sample_generator(cfg.seed, batch["step"], index)
        u = torch.rand(4, generator=g)
        sigmas.append(torch.sigmoid(torch.randn(1, generator=g) * cfg.sigma_std + cfg.sigma_mean))
        noise_g = g
        if device.type != "cpu":
            noise_g = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
        vnoise.append(torch.randn(nv, vc.latent_dim, generator=noise_g, device=device))
        anoise.append(torch.randn(na, ac.latent_dim, generator=noise_g, device=device))
        if cfg.noise_correlation > 0:  # drawn last, so that 0 keeps every sample's noise
            vnoise[-1] = share_over_time(vnoise[-1][None], grid, cfg.noise_correlation, noise_g)[0]
        prompts.append("" if u[0] < cfg.text_dropout else batch["captions"][k])
        if u[1] < cfg.p_image:
            vclean[k, : grid[1] * grid[2]] = True  # latent frame 0 is the given first image
        if u[2] < cfg.p_audio:
            aclean[k] = True
        estimate.append(bool(u[3] < SELF_CONDITION_RATE))
    sigma = shift_sigma(torch.cat(sigmas), cfg.shift).to(device)
    vclean, aclean = vclean.to(device), aclean.to(device)
    vnoise, anoise = torch.stack(vnoise), torch.stack(anoise)
    s = sigma[:, None, None]
    video_t = torch.where(vclean[..., None], video_x0, add_noise(video_x0, vnoise, s))
    audio_t = torch.where(aclean[..., None], audio_x0, add_noise(audio_x0, anoise, s))
    text, text_mask = pipe.text_encoder.encode(prompts)
    positions = sequence_positions(grid, na, text.shape[1], vc, ac, cfg.fps)
    video_weight = None
    if cfg.object_loss_weight > 0:
        covered = vc.pool(batch["objects"].to(device, non_blocking=True).float() / 255).reshape(b, -1)
        video_weight = 1 + cfg.object_loss_weight * covered
    audio_shifted, audible = None, None
    if "audio_shifted" in batch:
        audio_shifted = ac.encode(batch["audio_shifted"].to(device, non_blocking=True))
        audible = batch["audible"].to(device)
    video_cells = None
    if cfg.temporal_loss_weight > 0 or cfg.spatial_loss_weight > 0:  # a learned codec's cells are latent pixels
        pixels = isinstance(vc, PatchVideoCodec)
        video_cells = grid, (vc.patch_t, vc.patch_h, vc.patch_w) if pixels else (1, 1, 1)
    move = lambda t: t.to(device)  # noqa: E731
    return StepInputs(
        *map(
            move,
            (video_x0, audio_x0, video_t, audio_t, vnoise, anoise, sigma, vclean, aclean, text, text_mask, positions),
        ),
        video_weight=video_weight,
        audio_shifted=audio_shifted,
        audible=audible,
        video_cells=video_cells,
        self_condition=torch.tensor(estimate, device=device),
    )


SELF_CONDITION_RATE = 0.5  # share of samples given an x0 estimate in training (Chen et al. 2022)


def self_condition_inputs(model, x: StepInputs, inputs: tuple, rows, cfg: TrainConfig, prediction: str):
    """The x0 estimates a self-conditioning model reads in training: its own prediction from a first,
    gradient-free pass for the samples `x.self_condition` picks, zeros for the others (at sampling the
    first step has none), so it learns both to make an estimate and to refine one. None for a model
    without it. `inputs`: the forward's (video_t, audio_t, text, text_mask, video_clean, audio_clean,
    token sigmas), whose rows are the batch's samples and then the contrast `rows` again (None: none)."""
    net = getattr(model, "module", model)  # a DDP-wrapped model's own module: no reducer for this pass
    if not net.cfg.self_conditioning:
        return None
    video_t, audio_t = inputs[0], inputs[1]
    order = torch.arange(len(x.sigma), device=x.sigma.device)
    if rows is not None:
        order = torch.cat([order, rows.to(order.device)])
    picked = x.self_condition if x.self_condition is not None else torch.zeros(len(x.sigma), dtype=torch.bool)
    estimate_v, estimate_a = torch.zeros_like(video_t), torch.zeros_like(audio_t)
    chosen = picked.to(order.device)[order].nonzero().squeeze(1)
    # the first pass runs on the picked rows alone; FSDP gathers the weights in every forward, so
    # there each process runs it, on one row that it throws away when it picked none
    sharded = isinstance(net, FSDPModule)
    if len(chosen) or sharded:
        autocast = torch.autocast(video_t.device.type, torch.bfloat16, enabled=autocasts(cfg, video_t.device))
        with torch.no_grad(), autocast:
            some = [t[chosen if len(chosen) else order[:1]] for t in inputs]
            out = net(*some[:4], x.positions, *some[4:])
    if len(chosen):
        s = x.sigma[order][chosen][:, None, None]
        estimate_v[chosen] = predicted_x0(out.video.float(), some[0], s, prediction).to(video_t.dtype)
        estimate_a[chosen] = predicted_x0(out.audio.float(), some[1], s, prediction).to(audio_t.dtype)
    return estimate_v, estimate_a


def autocasts(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether the forward runs under bfloat16 autocast (cfg.precision; auto: as the pipeline's dtype)."""
    if cfg.precision == "auto":
        return resolve_dtype("auto", device) == torch.bfloat16
    return cfg.precision == "bfloat16"


def token_sigmas(x: StepInputs) -> torch.Tensor:
    """Each token's noise level [B, Nv + Na], as the model reads it: the sample's sigma, 0 where given."""
    return torch.cat([(~x.video_clean).float() * x.sigma[:, None], (~x.audio_clean).float() * x.sigma[:, None]], 1)


def anchor_loss(anchor, out, x: StepInputs, inputs: tuple, estimate, cfg: TrainConfig) -> torch.Tensor:
    """Per sample [B]: the mean squared difference between the model's outputs `out` and the frozen
    `anchor`'s (the init model: cfg.anchor_weight) on the same inputs, over the generated tokens, video
    plus audio_loss_weight x audio; 0 for the samples given a self-conditioning estimate, which the anchor
    never learnt to read. `inputs`: the forward's (video_t, audio_t, text, text_mask, video_clean,
    audio_clean, token sigmas) for the batch's samples."""
    b = x.video_t.shape[0]
    per_sample = torch.zeros(b, device=x.video_t.device)
    rows = torch.arange(b, device=per_sample.device)
    if estimate is not None and x.self_condition is not None:
        rows = (~x.self_condition.to(per_sample.device)).nonzero().squeeze(1)
    if not len(rows):
        return per_sample
    autocast = torch.autocast(x.video_t.device.type, torch.bfloat16, enabled=autocasts(cfg, x.video_t.device))
    with torch.no_grad(), autocast:
        some = [t[rows] for t in inputs]
        ref = anchor(*some[:4], x.positions, *some[4:])
    video = mean_squared_error(out.video[rows].float() - ref.video.float(), ~x.video_clean[rows])
    audio = mean_squared_error(out.audio[rows].float() - ref.audio.float(), ~x.audio_clean[rows])
    per_sample[rows] = video + cfg.audio_loss_weight * audio
    return per_sample


def step_loss(model, inputs: StepInputs, cfg: TrainConfig, prediction: str, anchor=None) -> tuple[torch.Tensor, dict]:
    """Mean flow loss over the batch, and its per-sample video and audio parts for logging; with
    cfg.audio_contrast_weight, plus the contrastive timing term (audio_contrast_loss), whose second
    predictions ride in the same forward pass as extra rows (one forward a step, as DDP and FSDP expect);
    with an `anchor` model, plus cfg.anchor_weight x anchor_loss."""
    x = inputs
    b = x.video_t.shape[0]
    token_sigma = token_sigmas(x)
    rows = contrast_rows(x, cfg) if cfg.audio_contrast_weight > 0 else None
    video_t, audio_t, text, text_mask, vclean, aclean, tsigma = (
        x.video_t, x.audio_t, x.text, x.text_mask, x.video_clean, x.audio_clean, token_sigma
    )  # fmt: skip
    if rows is not None and len(rows):  # the same samples again, each given its moved sound
        video_t, text, text_mask, vclean, aclean, tsigma = (
            torch.cat([t, t[rows]]) for t in (video_t, text, text_mask, vclean, aclean, tsigma)
        )
        audio_t = torch.cat([audio_t, x.audio_shifted[rows].to(audio_t.dtype)])
    estimate = self_condition_inputs(
        model, x, (video_t, audio_t, text, text_mask, vclean, aclean, tsigma), rows, cfg, prediction
    )
    with torch.autocast(x.video_t.device.type, torch.bfloat16, enabled=autocasts(cfg, x.video_t.device)):
        out = model(video_t, audio_t, text, text_mask, x.positions, vclean, aclean, tsigma, self_condition=estimate)
    s = x.sigma[:, None, None]  # the loss in float32 under bf16
    video_weight = (~x.video_clean).float() if x.video_weight is None else (~x.video_clean) * x.video_weight
    video_error = velocity_error(out.video[:b], x.video_x0, x.video_noise, x.video_t, s, prediction)
    loss_v = mean_squared_error(video_error, video_weight)
    loss_a = flow_loss(out.audio[:b].float(), x.audio_x0, x.audio_noise, x.audio_t, s, prediction, ~x.audio_clean)
    # a sample whose audio is all given has no audio loss; averaging over the whole batch (not over the
    # samples with audio loss) keeps N processes x B samples equal to one process with N x B
    has_audio = (~x.audio_clean).any(-1).float()
    loss = loss_v.mean() + cfg.audio_loss_weight * (loss_a * has_audio).mean()
    parts = {"video": loss_v.detach(), "audio": loss_a.detach(), "has_audio": has_audio}
    if anchor is not None:
        leash = anchor_loss(anchor, out, x, (x.video_t, x.audio_t, x.text, x.text_mask, x.video_clean,
                                             x.audio_clean, token_sigma), estimate, cfg)  # fmt: skip
        loss = loss + cfg.anchor_weight * leash.mean()
        parts["anchor"] = leash.detach()
    if x.video_cells is not None:
        grid, cell = x.video_cells
        loss_d = difference_loss(
            video_error, ~x.video_clean, grid, cell, cfg.temporal_loss_weight, cfg.spatial_loss_weight
        )
        loss = loss + loss_d.mean()
        parts["difference"] = loss_d.detach()
    if rows is not None:
        won = torch.full_like(loss_v, float("nan")).detach()
        if len(rows):
            moved = flow_loss(
                out.video[b:].float(), x.video_x0[rows], x.video_noise[rows], x.video_t[rows], s[rows], prediction,
                video_weight[rows],
            )  # fmt: skip
            contrast, won[rows] = audio_contrast_loss(loss_v[rows], moved, cfg.audio_contrast_temperature)
            loss = loss + cfg.audio_contrast_weight * contrast / b  # over the batch, as the audio loss
        parts["contrast_won"] = won
    return loss, parts


def contrast_rows(x: StepInputs, cfg: TrainConfig) -> torch.Tensor:
    """The samples that take part in the contrastive timing term: given their whole soundtrack, with an
    impact in it, some video to denoise, at noise >= audio_contrast_min_sigma. At low noise the picture
    shows where the impacts are and no sound could move them, so asking for a gap there would teach the
    model to spoil the video for a sound it judges wrong; a clip without impacts has a moved sound that
    differs from its own in ambience noise alone."""
    if x.audio_shifted is None or x.audible is None:
        raise ValueError("audio_contrast_weight > 0 needs the batch's shifted sound (StepBatches makes it)")
    part = x.audio_clean.all(-1) & (x.sigma >= cfg.audio_contrast_min_sigma) & ~x.video_clean.all(-1) & x.audible
    return part.nonzero().squeeze(1)


def audio_contrast_loss(
    own: torch.Tensor, moved: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The contrastive timing term summed over samples, from their video errors given their own sound
    and given it with the impacts moved, and whether each own sound already predicts better.

    The logit is the relative gap (moved - own) / (tau own); the term is tau own softplus(-logit), with
    own held constant in the factor, so that its gradient is sigmoid(-logit) (d own - d moved): in the
    flow loss's units, weight 1 pulls on the own error at most as hard as the flow loss does, and it
    lets go once the own sound predicts the video better by a few tau."""
    scale = temperature * own.detach().clamp(min=1e-8)
    gap = (moved - own) / scale
    return (scale * torch.nn.functional.softplus(-gap)).sum(), (gap > 0).float().detach()


# ------------------------------------------------------------------------------------------ run


def matmul_peak_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024) -> float:
    """Measured dense matmul FLOP/s on this device: the denominator of MFU."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    reps, start = 8, time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start)


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups over the weights that train (freeze_all_but): one, or with the
    text input projection apart at cfg.text_in_lr_scale times the rate and the self-conditioning inputs
    at cfg.self_condition_lr_scale.
    Adam moves each weight by about the rate a step whatever its gradient's size, so inputs that start
    at zero in a fine-tune (new text columns for more MiniLM layers, ``--init`` from a model that read
    fewer; self-conditioning inputs) need a larger rate to reach the size of the old ones within it."""
    apart = [
        (list(model.text_in.parameters()), cfg.text_in_lr_scale),
        ([getattr(model, n).weight for n in ("video_self_in", "audio_self_in") if hasattr(model, n)],
         cfg.self_condition_lr_scale),
    ]  # fmt: skip
    apart = [([p for p in params if p.requires_grad], scale) for params, scale in apart if scale != 1.0]
    apart = [(params, scale) for params, scale in apart if params]
    taken = {id(p) for params, _ in apart for p in params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [{"params": params, "lr_scale": scale} for params, scale in apart]
    return [{"params": rest}, *groups] if rest else groups


def freeze_all_but(model: torch.nn.Module, prefixes: tuple[str, ...]) -> int:
    """Freeze every weight whose name starts with none of `prefixes` (cfg.trainable; empty: none
    frozen); return how many weights still train. A prefix that names no weight is a ValueError, so a
    typo cannot silently freeze the whole model."""
    if not prefixes:
        return sum(p.numel() for p in model.parameters())
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            tops = sorted({name.split(".")[0] for name in names})
            raise ValueError(f"trainable: {prefix!r} names no weight of this model; its modules are {tops}")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10 % at max_steps; with a cool-down (anneal_from), linear
    from the rate at anneal_from to 2 % of lr over anneal_steps."""
    if cfg.anneal_from is not None and step >= cfg.anneal_from:
        start = warmup_cosine_lr(cfg, cfg.anneal_from)
        progress = min(1.0, (step - cfg.anneal_from) / cfg.anneal_steps)
        return start + (0.02 * cfg.lr - start) * progress
    return warmup_cosine_lr(cfg, step)


def warmup_cosine_lr(cfg, step: int) -> float:
    """Linear warm-up over cfg.warmup_steps, then cosine decay to 10 % of cfg.lr at cfg.max_steps (any
    config with those three fields: the model's and the video codec's runs)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """One EMA step towards `model`; the EMA warms up with the run (decay (1 + step) / (10 + step) until
    that reaches `decay`)."""
    rate = 1 - min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm.detach(), rate)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device() -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def build_run_pipeline(cfg: TrainConfig) -> HappyHorsePipeline:
    torch.manual_seed(cfg.seed)
    scheduler = SchedulerConfig(
        cfg.sampler,
        cfg.num_inference_steps,
        cfg.shift,
        cfg.guidance_scale,
        cfg.audio_guidance_scale,
        noise_correlation=cfg.noise_correlation,
    )
    defaults = {"width": cfg.width, "height": cfg.height, "fps": cfg.fps, "seconds": cfg.seconds}
    video_codec = None
    if cfg.video_codec:
        from ..codecs import Codec

        path = Path(cfg.video_codec).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"video_codec: {cfg.video_codec} is not a codec directory (no config.json)")
        video_codec = Codec.from_pretrained(path).requires_grad_(False)
        cell = (video_codec.patch_t, video_codec.patch_h, video_codec.patch_w)
        if cell != tuple(cfg.video_patch):
            raise ValueError(f"video_codec: its cell is {cell} pixels but video_patch is {tuple(cfg.video_patch)}")
    return build_pipeline(
        cfg.model,
        text_encoder=cfg.text_encoder,
        video_patch=cfg.video_patch,
        audio_patch=cfg.audio_patch,
        sample_rate=cfg.sample_rate,
        channels=cfg.channels,
        audio_scale=cfg.audio_scale,
        defaults=defaults,
        scheduler=scheduler,
        video_codec=video_codec,
        text_layers=cfg.text_layers,
        **cfg.model_overrides,
    )


VIDEO_PROJECTIONS = ("video_in.weight", "video_in.bias", "video_out.weight", "video_out.bias")
SELF_CONDITION_INPUTS = ("video_self_in.weight", "audio_self_in.weight")


def load_init_weights(source: str | Path, model: torch.nn.Module, text_layers=None) -> dict[str, torch.Tensor]:
    """The float32 state of `source` (a model directory or a .safetensors file) for `model`, with a clear
    error when it was trained for another architecture. Only the video input and output projections
    may differ in shape (a model moved to another video codec): those keep `model`'s fresh init, as do
    self-conditioning inputs the source lacks (zero: the model starts as the source). When
    `model` reads more MiniLM layers (`text_layers`) than the source did, the source's text input
    columns go to its layers' places and the rest start at zero: the model starts as the source."""
    from safetensors.torch import load_file

    path = Path(source).expanduser()
    directory = path if path.is_dir() else None
    if path.is_dir():
        path = path / "transformer" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {source} is neither a model directory nor a .safetensors file")
    state = load_file(str(path))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    mismatched = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    for k in [k for k in mismatched if k in VIDEO_PROJECTIONS]:
        state[k] = expected[k]
    for k in [k for k in missing if k in SELF_CONDITION_INPUTS]:  # zero at init: the model starts as the source
        state[k] = expected[k]
    missing = [k for k in missing if k not in SELF_CONDITION_INPUTS]
    if text_layers is not None and _read_text_layers(directory) != tuple(text_layers):
        state["text_in.weight"] = _widened_text_in(
            state["text_in.weight"], _read_text_layers(directory), tuple(text_layers), f"init_from: {source}"
        )
    mismatched = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"init_from: {source} does not fit this config's model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, other shapes {sorted(mismatched)[:3]}); "
            "set model/model_overrides to its architecture"
        )
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


def _read_text_layers(directory: Path | None) -> tuple[int, ...]:
    """The MiniLM layers a model directory's text encoder read (its config; the last one if unsaid)."""
    from ..codecs.text import MINILM_LAYERS

    config = directory / "text_encoder" / "config.json" if directory is not None else None
    if config is not None and config.is_file():
        return tuple(json.loads(config.read_text()).get("layers", (MINILM_LAYERS,)))
    return (MINILM_LAYERS,)


def widen_text_layers(
    transformer: SingleStreamTransformer, old: tuple[int, ...], layers: tuple[int, ...]
) -> SingleStreamTransformer:
    """A copy of `transformer`, which read MiniLM layers `old`, that reads `layers` (a superset) and
    computes exactly what it did: the new text input columns are zero. So a guide model trained on
    fewer layers can guide a model that reads more (autoguidance needs the same inputs)."""
    old, layers = tuple(old), tuple(layers)
    if old == layers:
        return transformer
    state = dict(transformer.state_dict())
    state["text_in.weight"] = _widened_text_in(state["text_in.weight"], old, layers, "guide")
    from ..codecs.text import MINILM_WIDTH

    wide = SingleStreamTransformer(replace(transformer.cfg, text_in=MINILM_WIDTH * len(layers)))
    wide.load_state_dict(state)
    return wide.to(next(transformer.parameters()).dtype).eval()


def _widened_text_in(weight: torch.Tensor, old: tuple[int, ...], layers: tuple[int, ...], what: str) -> torch.Tensor:
    """A text input weight [dim, 384 k] for MiniLM layers `old`, placed in a [dim, 384 len(layers)] one
    of zeros, at the columns of those layers."""
    from ..codecs.text import MINILM_WIDTH as W

    if not set(old) <= set(layers) or weight.shape[1] != W * len(old):
        raise ValueError(f"{what} read MiniLM layers {list(old)}, not all among text_layers {list(layers)}")
    wide = torch.zeros(weight.shape[0], W * len(layers), dtype=weight.dtype)
    for i, k in enumerate(old):
        j = layers.index(k)
        wide[:, W * j : W * (j + 1)] = weight[:, W * i : W * (i + 1)]
    return wide


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    progress: bool = True,
    log=print,
    anneal_steps: int | None = None,
) -> dict:
    """Train until max_steps (or `minutes` of wall time); return a summary. Writes, under `out`:
    config.json, log.jsonl, checkpoint/, model/ (EMA weights, loadable by --model), samples/, loss.png.

    `anneal_steps` starts a cool-down at the step the run resumes from (recorded in config.json, so a
    later resume continues it): the rate falls linearly to 2 % of lr and the run ends after those steps."""
    out = Path(out)
    if cfg.anchor_weight > 0 and not cfg.init_from:
        raise ValueError("anchor_weight: needs init_from (--init MODEL), the model the fine-tune is held to")
    rank, world_size = _distributed()
    device = _device()
    is_main = rank == 0
    ckpt_dir = out / "checkpoint"
    if (out / "config.json").exists() and resume:
        saved_dict = json.loads((out / "config.json").read_text())
        saved_dict.setdefault("precision", precision_of_old_runs(device.type == "cuda"))
        saved = TrainConfig.from_dict(saved_dict)
        if saved.to_dict() != cfg.to_dict():
            diff = sorted(k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v)
            log(f"resume: using the run's saved config; CONFIG differs in {diff}")
        cfg = saved
    pipe = build_run_pipeline(cfg)
    pipe.text_encoder.to(device)  # the frozen text encoder and video codec run where the model trains
    pipe.video_codec.to(device)
    model = pipe.transformer.train().to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    start_step, history, saved_optimizer = 0, [], None
    if resume and (ckpt_dir / "state.json").exists():
        model_state, ema_state, opt_tensors, state = load_checkpoint(ckpt_dir)
        model.load_state_dict(model_state)
        ema.load_state_dict(ema_state)
        saved_optimizer = optimizer_state(opt_tensors, state["optimizer"])
        start_step = state["step"]
        log(f"resumed from step {start_step}")
    elif resume:
        log(f"resume: no checkpoint in {ckpt_dir}; starting from step 0")
    if start_step == 0 and cfg.init_from:
        state = load_init_weights(cfg.init_from, model, cfg.text_layers)
        model.load_state_dict(state)
        ema.load_state_dict(state)
        log(f"weights from {cfg.init_from}")
    anchor = None
    if cfg.anchor_weight > 0:  # the init model, frozen, whatever step the run resumes from
        anchor = SingleStreamTransformer(model.cfg)
        anchor.load_state_dict(load_init_weights(cfg.init_from, anchor, cfg.text_layers))
        anchor = anchor.eval().requires_grad_(False).to(device)
    if cfg.trainable:
        log(f"training {freeze_all_but(model, cfg.trainable):,} weights ({', '.join(cfg.trainable)}); the rest frozen")
    if anneal_steps is not None and cfg.anneal_from is None:
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "anneal_from": start_step, "anneal_steps": anneal_steps})
        log(f"cool-down from step {start_step} over {anneal_steps} steps (lr {lr_at(cfg, start_step):.2e} -> 2 %)")
    end_step = max_steps if max_steps is not None else cfg.max_steps
    if cfg.anneal_from is not None:
        end_step = min(end_step, cfg.anneal_from + cfg.anneal_steps)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
        if start_step == 0 and (out / "log.jsonl").exists():
            (out / "log.jsonl").unlink()
    wrapped = model
    sharded = world_size > 1 and cfg.fsdp
    if sharded:  # FSDP2: each block's parameters (and the EMA's, alike) sharded across processes
        from torch.distributed.fsdp import fully_shard

        for module in (model, ema):
            for block in module.blocks:
                fully_shard(block)
            fully_shard(module)
    elif world_size > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, cfg), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    if saved_optimizer is not None:
        if sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(model, optimizer, saved_optimizer, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(saved_optimizer)
    prediction = model.cfg.prediction
    loader = DataLoader(
        StepBatches(cfg, start_step, end_step, rank, world_size),
        batch_size=None,
        num_workers=cfg.num_workers,
        multiprocessing_context="spawn" if cfg.num_workers else None,  # never fork a process with threads
        prefetch_factor=2 if cfg.num_workers else None,
        persistent_workers=False,
        pin_memory=device.type == "cuda",
    )
    peak = matmul_peak_flops(device)
    tokens_per_sample = None
    started = time.perf_counter()
    window = _log_window()
    bar = _progress(end_step, start_step) if (progress and is_main) else None
    step = start_step
    summary = {}
    try:
        fetched = time.perf_counter()
        for batch in loader:
            window["wait"] += time.perf_counter() - fetched  # time the model waited for clips
            step = batch["step"]
            inputs = prepare_step(cfg, pipe, batch, device)
            if tokens_per_sample is None:
                lengths = (inputs.video_t.shape[1], inputs.audio_t.shape[1], inputs.text.shape[1])
                tokens_per_sample = sum(lengths)
                flops_per_token = model.flops_per_token(lengths)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step) * group.get("lr_scale", 1.0)
            loss, parts = step_loss(wrapped, inputs, cfg, prediction, anchor)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            update_ema(ema, model, step, cfg.ema_decay)
            window["steps"] += 1
            # the loss, and the audio contrast's wins and extra rows (0 without it), over all processes
            won = parts.get("contrast_won", torch.full_like(parts["video"], float("nan")))
            difference = parts["difference"].mean() if "difference" in parts else loss.new_zeros(())
            leash = parts["anchor"].mean() if "anchor" in parts else loss.new_zeros(())
            logged = torch.stack(
                [loss.detach().float(), won.nan_to_num(0.0).sum(), (~won.isnan()).sum().float(), difference.float(),
                 leash.float()]
            )  # fmt: skip
            if world_size > 1:  # log the mean over all processes' samples, as one process would
                dist.all_reduce(logged)
                logged[0] /= world_size
                logged[3] /= world_size
                logged[4] /= world_size
            loss_all, won_all, rows_all, difference_all, anchor_all = logged.tolist()
            window["difference"].append(difference_all)
            window["anchor"].append(anchor_all)
            window["loss"].append(loss_all)
            window["won"] += won_all
            window["rows"] += rows_all
            per_sample = parts["video"].cpu() + cfg.audio_loss_weight * parts["audio"].cpu() * parts["has_audio"].cpu()
            for s, l_ in zip(inputs.sigma.cpu().tolist(), per_sample.tolist(), strict=True):
                window["bins"][min(int(s / 0.2), 4)].append(l_)
            done = step + 1
            if is_main and (done % cfg.log_every == 0 or done == end_step):
                elapsed = time.perf_counter() - window["t"]
                sps = window["steps"] / elapsed
                rows_per_step = cfg.batch_size * world_size + window["rows"] / window["steps"]  # extra rows too
                tokens = sps * rows_per_step * tokens_per_sample
                record = {
                    "step": done,
                    "loss": float(np.mean(window["loss"])),
                    "loss_by_sigma": {
                        f"{SIGMA_BINS[i]:.1f}-{SIGMA_BINS[i + 1]:.1f}": (float(np.mean(v)) if v else None)
                        for i, v in enumerate(window["bins"])
                    },
                    "lr": lr_at(cfg, step),
                    "grad_norm": float(grad_norm),
                    "steps_per_s": sps,
                    "tokens_per_s": tokens,
                    "mfu": tokens * flops_per_token / (peak * world_size),
                    "data_wait": window["wait"] / elapsed,  # share of the time spent waiting for clips
                    "elapsed_s": time.perf_counter() - started,
                }
                if "difference" in parts:  # the difference loss's part of `loss`, weights applied
                    record["difference_loss"] = float(np.mean(window["difference"]))
                if "anchor" in parts:  # the anchor's term before its weight (a share of `loss` at anchor_weight)
                    record["anchor_loss"] = float(np.mean(window["anchor"]))
                if window["rows"]:  # share of contrastive samples whose own sound predicted the video better
                    record["audio_contrast_won"] = window["won"] / window["rows"]
                history.append(record)
                with open(out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                window = _log_window()
                if bar is not None:
                    bar[0].update(bar[1], completed=done, description=f"loss {record['loss']:.4f}")
            out_of_time = minutes is not None and time.perf_counter() - started > minutes * 60
            sample_now = cfg.sample_every > 0 and (done % cfg.sample_every == 0 or done == end_step or out_of_time)
            if done % cfg.checkpoint_every == 0 or done == end_step or out_of_time or sample_now:
                exported = _save(cfg, out, pipe, model, ema, optimizer, done, is_main)
                if exported is not None and sample_now:
                    write_samples(pipe, exported, out / "samples" / f"step_{done:06d}", cfg)
            if out_of_time:
                log(f"stopping after {minutes} minutes at step {done}")
                break
            fetched = time.perf_counter()
        summary = {"step": step + 1, "log": history[-1] if history else None, "out": str(out)}
        if is_main:
            plot_loss(out)
    finally:
        if bar is not None:
            bar[0].stop()
        if dist.is_initialized():
            dist.barrier()  # leave together, then tear down (gloo aborts a rank whose peer still works)
            dist.destroy_process_group()
    return summary


def _log_window() -> dict:
    """What the log averages over its window: steps, losses (per noise-level bin) and loader waits."""
    return {
        "t": time.perf_counter(),
        "steps": 0,
        "loss": [],
        "difference": [],  # the difference loss (0 without it)
        "anchor": [],  # the anchor's term (0 without it)
        "bins": [[] for _ in SIGMA_BINS[1:]],
        "wait": 0.0,
        "won": 0.0,  # audio contrast: samples whose own sound predicted better, of `rows` taking part
        "rows": 0.0,
    }


def _save(cfg, out, pipe, model, ema, optimizer, step, is_main) -> SingleStreamTransformer | None:
    """Checkpoint for resuming, and the EMA model as a model directory (`out/model`); returns the EMA
    model with full weights on the main process (for samples)."""
    if dist.is_initialized() and cfg.fsdp:  # gather full weights and optimizer state (collective)
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, ema_state = get_model_state_dict(model, options=opts), get_model_state_dict(ema, options=opts)
        optimizer_state_dict = get_optimizer_state_dict(model, optimizer, options=opts)
    else:
        model_state, ema_state, optimizer_state_dict = model.state_dict(), ema.state_dict(), optimizer.state_dict()
    if not is_main:
        return None
    save_checkpoint(
        out / "checkpoint", model_state, ema_state, optimizer_state_dict, {"step": step, "config": cfg.to_dict()}
    )
    full_ema = SingleStreamTransformer(model.cfg)
    full_ema.load_state_dict({k: v.detach().cpu() for k, v in ema_state.items()})
    export = HappyHorsePipeline(
        full_ema, pipe.video_codec, pipe.audio_codec, pipe.text_encoder, pipe.scheduler, pipe.defaults
    )
    export.save_pretrained(out / "model")
    return full_ema.eval()


def write_samples(pipe: HappyHorsePipeline, ema, directory: Path, cfg: TrainConfig) -> None:
    """A fixed set of test-split prompts with the EMA model: T2V, and TI2V from the clip's frame 0."""
    from ..media import save_video

    world = WorldConfig(cfg.width, cfg.height, cfg.fps, cfg.seconds, cfg.sample_rate, cfg.channels)
    sampler = HappyHorsePipeline(
        ema, pipe.video_codec, pipe.audio_codec, pipe.text_encoder, pipe.scheduler, pipe.defaults
    )
    sampler.to(next(ema.parameters()).device)
    for seed in SAMPLE_PROMPT_SEEDS:
        clip = make_clip(seed, "test", world, ground_truth=False)
        image = clip.frames[0] if seed % 2 else None
        result = sampler(clip.caption, image=image, seed=seed)
        save_video(
            directory / f"{seed:02d}_{result.mode}.mp4",
            result.frames[0],
            result.fps,
            result.audio[0],
            result.sample_rate,
        )
        (directory / f"{seed:02d}_{result.mode}.txt").write_text(clip.caption + "\n")
    ema.eval()


def plot_loss(out: Path) -> None:
    """loss.png: total loss and loss per noise-level bin against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log_file = out / "log.jsonl"  # absent when a run stopped (on its wall budget) before its first record
    records = [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()] if log_file.exists() else []
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in records], label="loss", color="black", lw=2)
    for key in records[-1]["loss_by_sigma"]:
        ax.plot(steps, [r["loss_by_sigma"].get(key) or float("nan") for r in records], label=f"sigma {key}", lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("flow loss (v MSE)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


def _progress(total: int, start: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()
    )
    bar.start()
    return bar, bar.add_task("training", total=total, completed=start)
