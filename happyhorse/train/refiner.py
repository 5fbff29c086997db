"""Training the video refiner (`happyhorse.model.refiner`) on the default model's own samples.

Pairs: a train-split world clip is noised to one of the sampler's noise levels sigma_k (k = 2..5 of
the 8-step schedule: 0.86 down to 0.55), the model samples from there to 0 with its stored settings
(SDEdit), and the decoded frames are paired with the clip itself. From those levels the sample keeps
the truth's layout but is drawn the model's way (patchy, split, off-colour cells): the refiner learns
the drawing, not the layout, which pure-noise samples could not teach because they have no truth.
(From sigma 0.93 the sample often changes the room itself, a difference no refiner can undo.)
Pairs are written in chunks (`pairs_NNN.npz`) so that making them resumes; the refiner trains on
random 9-frame windows of them with an L1 loss weighted towards pixels that are object-coloured in
either the truth or the sample (the object, and what the model painted in its place).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..eval.tracking import MIN_SATURATION, MIN_VALUE
from ..media import atomic_directory, atomic_path, write_json_atomic
from ..model.refiner import RefinerConfig, VideoRefiner
from .checkpoint import load_checkpoint, optimizer_state, save_checkpoint
from .codec import PatchDiscriminator
from .config import precision_problem, read_config_file
from .trainer import autocasts, update_ema, warmup_cosine_lr

PAIR_SEEDS = 1_000_000  # train-split seeds of pair chunk c: PAIR_SEEDS + c * clips_per_chunk onwards
# first and last schedule index an SDEdit pair starts from (0.86 to 0.55; from 0.93 the room itself changes)
START_STEPS = (2, 5)


class RunDirectoryError(ValueError):
    """The run directory holds another run's pairs or checkpoint (the CLI names --out)."""


@dataclass
class RefinerTrainConfig:
    channels: tuple[int, int, int] = (16, 32, 64)
    blocks: tuple[int, int] = (1, 2)
    window: int = 9  # frames per training window (the network is convolutional in time)
    batch: int = 8  # windows per step
    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 1500
    ema_decay: float = 0.998
    grad_clip: float = 1.0
    object_weight: float = 10.0  # a pixel's loss weight is 1 + this where truth or sample is object-coloured
    # what the L1 pulls the refined frames toward: "truth" (the paired clip) or "input" (the model's own
    # frames: SimGAN's self-regularisation, Shrivastava et al. 2017; the realism then comes from the
    # discriminator alone, and no layout the sample lacks is asked of the refiner)
    target: str = "truth"
    # > 0: a patch discriminator (train.codec.PatchDiscriminator) tells refined frames from world frames
    # (hinge loss), and the refiner's loss adds this times its adversarial term
    adversarial_weight: float = 0.0
    validation_clips: int = 64  # clips of the last chunk kept out of training, for the validation loss
    pair_chunks: int = 6  # chunks of SDEdit pairs to make (and train on)
    clips_per_chunk: int = 200
    seed: int = 0
    # what the refiner's and discriminator's forwards compute in (bfloat16 autocast; losses and weights
    # float32), as TrainConfig.precision. Like max_steps it may change when a run resumes: it changes the
    # rounding, not what is trained. Runs saved before it existed ran in float32
    precision: str = "auto"

    def __post_init__(self):
        for name, kind in (("channels", int), ("blocks", int)):
            try:
                setattr(self, name, tuple(kind(v) for v in getattr(self, name)))
            except (TypeError, ValueError):
                raise ValueError(f"{name}: a list of integers, got {getattr(self, name)!r}") from None
        RefinerConfig(self.channels, self.blocks)
        for f in fields(self):
            if f.type in ("int", "float"):
                value = getattr(self, f.name)
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or (f.type == "int" and value != int(value))
                ):
                    raise ValueError(
                        f"{f.name}: must be {'an integer' if f.type == 'int' else 'a number'}, got {value!r}"
                    )
                setattr(self, f.name, int(value) if f.type == "int" else float(value))
        for name in ("window", "batch", "max_steps", "validation_clips", "pair_chunks", "clips_per_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "object_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay: must be in [0, 1), got {self.ema_decay}")
        if self.validation_clips >= self.pair_chunks * self.clips_per_chunk:
            raise ValueError(
                f"validation_clips: must be fewer than the {self.pair_chunks * self.clips_per_chunk} pairs "
                f"(pair_chunks x clips_per_chunk), got {self.validation_clips}"
            )
        if problem := precision_problem(self.precision):
            raise ValueError(f"precision: {problem}")
        if self.target not in ("truth", "input"):
            raise ValueError(f"target: 'truth' or 'input', got {self.target!r}")
        if self.adversarial_weight < 0:
            raise ValueError(f"adversarial_weight: must be >= 0, got {self.adversarial_weight}")
        if self.target == "input" and self.adversarial_weight == 0:
            raise ValueError("target = 'input' needs adversarial_weight > 0 (else the refiner learns the identity)")

    @classmethod
    def from_dict(cls, d: dict) -> RefinerTrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"refiner training config: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)


def load_refiner_config(path: str | Path, overrides: dict | None = None) -> RefinerTrainConfig:
    return RefinerTrainConfig.from_dict({**read_config_file(path), **(overrides or {})})


# ----------------------------------------------------------------------------------------- pairs


def make_pairs(pipe, seeds: range, batch: int = 8, split: str = "train") -> dict[str, np.ndarray]:
    """SDEdit pairs of the given world seeds: {'generated', 'truth': uint8 [N, T, H, W, 3],
    'start': the schedule index each sample started from}. Samples with the pipeline's stored settings,
    all but contrastive guidance (off in the default model) and restarts (each pair starts part-way down
    the plain schedule from the noised truth), through its own denoiser."""
    from ..diffusion.samplers import get_schedule, sample
    from ..eval.suite import world_config
    from ..pipeline import initial_noise, sequence_positions
    from ..world import make_clip

    sch, vc, ac, d = pipe.scheduler, pipe.video_codec, pipe.audio_codec, pipe.defaults
    world = world_config(pipe)
    num_frames = world.num_frames
    grid = vc.latent_shape(num_frames, d["height"], d["width"])
    sigmas = get_schedule(sch.num_inference_steps, sch.shift)
    last = min(START_STEPS[1], len(sigmas) - 2)  # a schedule of few steps starts its pairs earlier
    first = min(START_STEPS[0], last)
    generated, truth, starts = [], [], []
    for b0 in range(seeds.start, seeds.stop, batch):
        chunk = range(b0, min(b0 + batch, seeds.stop))
        clips = [make_clip(s, split, world, ground_truth=False) for s in chunk]
        n = len(clips)
        frames = torch.from_numpy(np.stack([c.frames for c in clips]))
        zv = vc.encode(frames).reshape(n, -1, vc.latent_dim)
        za = ac.encode(torch.from_numpy(np.stack([c.audio for c in clips])).float())
        text, mask = pipe.text_encoder.encode([c.caption for c in clips] + [""] * n)
        positions = sequence_positions(grid, za.shape[1], text.shape[1], vc, ac, d["fps"]).to(pipe.device)
        auto = (sch.autoguidance_scale, sch.audio_autoguidance_scale)
        denoise = pipe._denoiser(
            text, mask, positions, [None, None], True, sch.guidance_scale, sch.audio_guidance_scale,
            sch.guidance_interval, auto, tuple(sch.guide_skip_blocks), (None, None), None,
            tuple(sch.guide_frame_local_blocks), auto_interval=sch.autoguidance_interval,
        )  # fmt: skip
        gen = torch.Generator().manual_seed(b0)
        noise = initial_noise(n, grid, vc.latent_dim, za.shape[1], ac.latent_dim, sch.noise_correlation, gen)
        k = int(torch.randint(first, last + 1, (1,), generator=gen))
        s = sigmas[k]
        with torch.no_grad():
            video, _ = sample(denoise, [(1 - s) * zv + s * noise[0], (1 - s) * za + s * noise[1]], sigmas[k:],
                              sch.sampler, None, gen)  # fmt: skip
        generated.append(vc.decode(video.reshape(n, *grid, -1)).numpy())
        truth.append(frames.numpy())
        starts += [k] * n
    return {"generated": np.concatenate(generated), "truth": np.concatenate(truth), "start": np.array(starts)}


def model_fingerprint(model_dir) -> str:
    """sha256 of a model directory's transformer weights (the embedded default model for None): pairs
    belong to the model that sampled them."""
    from ..pipeline import DEFAULT_MODEL_DIR

    path = Path(model_dir or DEFAULT_MODEL_DIR) / "transformer" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"model: {path.parent.parent} is not a model directory (no {path.name})")
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_pairs(model_dir, out: str | Path, chunks: int, clips_per_chunk: int = 200, log=print, progress=None) -> Path:
    """Make `chunks` chunks of pairs under OUT (pairs_000.npz ...), skipping those already there."""
    from ..pipeline import HappyHorsePipeline

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = {"transformer_sha256": model_fingerprint(model_dir), "clips_per_chunk": clips_per_chunk}
    recorded = out / "source.json"
    if recorded.exists() and json.loads(recorded.read_text()) != source:
        raise RunDirectoryError(f"{out} holds pairs of another model or chunk size ({recorded}); use a new --out")
    write_json_atomic(recorded, json.dumps(source, indent=1))
    pipe = HappyHorsePipeline.from_pretrained(model_dir)
    for c in range(chunks):
        if progress:
            progress(c, chunks)
        path = out / f"pairs_{c:03d}.npz"
        if path.exists():
            continue
        t0 = time.perf_counter()
        first = PAIR_SEEDS + c * clips_per_chunk
        pairs = make_pairs(pipe, range(first, first + clips_per_chunk))
        with atomic_path(path) as staging:
            np.savez(staging, **pairs)
        log(f"{path.name}: {clips_per_chunk} pairs in {time.perf_counter() - t0:.0f} s")
    if progress:
        progress(chunks, chunks)
    return out


def load_pairs(directory: str | Path, chunks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(generated, truth) uint8 [N, T, H, W, 3] of the first `chunks` chunks (all: None) in a pairs
    directory, in chunk order."""
    paths = sorted(Path(directory).glob("pairs_*[0-9].npz"))[:chunks]
    if not paths:
        raise FileNotFoundError(f"pairs: no pairs_NNN.npz in {directory} (make them with write_pairs)")
    generated, truth = [], []
    for path in paths:
        with np.load(path) as chunk:
            generated.append(chunk["generated"])
            truth.append(chunk["truth"])
    return np.concatenate(generated), np.concatenate(truth)


# ----------------------------------------------------------------------------------------- training


def object_coloured(frames: torch.Tensor) -> torch.Tensor:
    """float [..., 3] in [-1, 1] -> bool [...]: saturated like the world's objects (the tracker's HSV
    saturation and value thresholds), which its rooms never are."""
    rgb = (frames + 1) / 2
    value = rgb.amax(-1)
    saturation = (value - rgb.amin(-1)) / value.clamp_min(1e-6)
    return (saturation > MIN_SATURATION) & (value > MIN_VALUE)


def weighted_l1(output: torch.Tensor, generated: torch.Tensor, truth: torch.Tensor, object_weight: float):
    """L1 between `output` and the truth, each pixel weighted 1 + object_weight where the truth or the
    sample is object-coloured; inputs float [B, T, H, W, 3] in [-1, 1]."""
    weight = 1 + object_weight * (object_coloured(truth) | object_coloured(generated)).float()
    return (weight * (output - truth).abs().mean(-1)).sum() / weight.sum()


def windows(generated, truth, index: np.ndarray, window: int, rng: np.random.Generator):
    """Random `window`-frame windows of the clips `index`, mirrored left-right half the time (the world
    is left-right symmetric), as float tensors in [-1, 1]."""
    t = generated.shape[1]
    starts = rng.integers(0, t - window + 1, len(index))
    g = np.stack([generated[i, s : s + window] for i, s in zip(index, starts, strict=True)])
    r = np.stack([truth[i, s : s + window] for i, s in zip(index, starts, strict=True)])
    mirror = rng.random(len(index)) < 0.5
    g[mirror], r[mirror] = g[mirror, :, :, ::-1], r[mirror, :, :, ::-1]
    return as_float(g), as_float(r)


def as_images(frames: torch.Tensor) -> torch.Tensor:
    """[B, T, H, W, 3] -> [B * T, 3, H, W], the discriminator's frames."""
    return frames.reshape(-1, *frames.shape[2:]).permute(0, 3, 1, 2)


def as_float(frames: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 frames -> float32 in [-1, 1] on `device`."""
    return torch.from_numpy(np.ascontiguousarray(frames)).to(device).float() / 127.5 - 1.0


@torch.no_grad()
def validation_loss(refiner: VideoRefiner, generated, truth, object_weight: float) -> dict:
    """Loss of the refiner and of the identity (the unrefined sample) on whole held-out clips."""
    device = next(refiner.parameters()).device
    losses, identity, changes = [], [], []
    for i in range(0, len(generated), 8):
        g, r = as_float(generated[i : i + 8], device), as_float(truth[i : i + 8], device)
        refined = refiner(g)
        losses.append(float(weighted_l1(refined, g, r, object_weight)))
        identity.append(float(weighted_l1(g, g, r, object_weight)))
        changes.append(float((refined - g).abs().mean()))
    return {
        "val_loss": float(np.mean(losses)),  # against the truth, whatever the training target
        "identity_loss": float(np.mean(identity)),
        "change": float(np.mean(changes)),  # how far the refiner moves its input (mean abs, [-1, 1] scale)
    }


def keep_log_until(path: Path, step: int) -> None:
    """Keep the records of steps 1..step of a log.jsonl (none for a fresh run), atomically."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    write_json_atomic(path, "".join(line + "\n" for line in kept))


def save_refiner(refiner: VideoRefiner, directory: str | Path, weights_dtype: torch.dtype = torch.float32) -> Path:
    """A model directory component: config.json + model.safetensors, written atomically."""
    with atomic_directory(Path(directory)) as staging:
        refiner.save_pretrained(staging, weights_dtype)
    return Path(directory)


def train_refiner(
    cfg: RefinerTrainConfig,
    pairs_dir: str | Path,
    out: str | Path,
    minutes: float | None = None,
    log=print,
    progress=None,
) -> Path:
    """Train until cfg.max_steps (or `minutes`), resuming OUT/checkpoint; writes OUT/log.jsonl and the
    EMA weights as OUT/refiner (the component `ship_default_model.py --refiner` copies in).
    `progress(step, max_steps)` is called after every step."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generated, truth = load_pairs(pairs_dir, cfg.pair_chunks)
    if len(generated) <= cfg.validation_clips:
        raise ValueError(f"validation_clips: {cfg.validation_clips}, but the pairs hold only {len(generated)} clips")
    if cfg.window > generated.shape[1]:
        raise ValueError(f"window: {cfg.window} frames, longer than the pairs' {generated.shape[1]}")
    train_idx = np.arange(len(generated) - cfg.validation_clips)
    val = slice(len(generated) - cfg.validation_clips, None)
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the pairs stay in host memory
    cast = autocasts(cfg, torch.device(device))
    refiner = VideoRefiner(RefinerConfig(cfg.channels, cfg.blocks)).to(device)
    ema = copy.deepcopy(refiner).requires_grad_(False)
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=cfg.lr, weight_decay=0.0)
    disc = disc_optimizer = None
    if cfg.adversarial_weight > 0:
        disc = PatchDiscriminator().to(device)
        disc_optimizer = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    step = 0
    if (out / "checkpoint" / "state.json").exists():
        model_state, ema_state, opt_tensors, state = load_checkpoint(out / "checkpoint")
        free = ("max_steps", "precision")  # what a resumed run may change
        ours = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in free}
        if {k: v for k, v in state["config"].items() if k not in free} != ours:
            raise RunDirectoryError(f"{out}: its checkpoint was trained with another config; use a new --out")
        refiner.load_state_dict(model_state)
        ema.load_state_dict(ema_state)
        optimizer.load_state_dict(optimizer_state(opt_tensors, state["optimizer"]))
        step = state["step"]
        if disc is not None:
            if not (out / "discriminator" / "state.json").is_file():
                raise RunDirectoryError(f"{out}: the checkpoint has no discriminator/ beside it; use a new --out")
            disc_state, _, disc_opt_tensors, disc_meta = load_checkpoint(out / "discriminator")
            if disc_meta["step"] != step:  # saved first, so one save ahead when a run died between the two
                log(f"discriminator checkpoint is from step {disc_meta['step']}, the refiner's from {step}")
            disc.load_state_dict(disc_state)
            disc_optimizer.load_state_dict(optimizer_state(disc_opt_tensors, disc_meta["optimizer"]))
        log(f"resumed from step {step}")
    where = f"on {device} in {'bfloat16' if cast else 'float32'}"
    log(f"refiner: {refiner.num_params():,} parameters, {len(train_idx)} training pairs, {where}")
    keep_log_until(out / "log.jsonl", step)  # steps after the checkpoint are trained (and logged) again
    write_json_atomic(out / "config.json", json.dumps(asdict(cfg), indent=1))
    started = time.perf_counter()
    with open(out / "log.jsonl", "a") as log_file:
        while step < cfg.max_steps:
            rng = np.random.default_rng([cfg.seed, step])  # each step's windows: a resumed run draws the same
            lr = warmup_cosine_lr(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            g, r = windows(generated, truth, rng.choice(train_idx, cfg.batch), cfg.window, rng)
            g, r = g.to(device), r.to(device)
            with torch.autocast(g.device.type, torch.bfloat16, enabled=cast):
                refined = refiner(g).float()
                if disc is not None:
                    disc.requires_grad_(False)
                    fool = -disc(as_images(refined)).float().mean()
            loss = weighted_l1(refined, g, r if cfg.target == "truth" else g, cfg.object_weight)
            record = {"step": step + 1, "loss": float(loss.detach()), "lr": lr}
            if disc is not None:
                loss = loss + cfg.adversarial_weight * fool
                record["adversarial_loss"] = float(fool.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(refiner.parameters(), cfg.grad_clip)
            optimizer.step()
            update_ema(ema, refiner, step, cfg.ema_decay)
            if disc is not None:  # hinge loss: world frames above +1, refined ones below -1
                disc.requires_grad_(True)
                with torch.autocast(g.device.type, torch.bfloat16, enabled=cast):
                    scores = disc(as_images(r)).float(), disc(as_images(refined.detach())).float()
                disc_loss = F.relu(1 - scores[0]).mean() + F.relu(1 + scores[1]).mean()
                for group in disc_optimizer.param_groups:
                    group["lr"] = lr
                disc_optimizer.zero_grad(set_to_none=True)
                disc_loss.backward()
                disc_optimizer.step()
                record["discriminator_loss"] = float(disc_loss.detach())
            step += 1
            if progress:
                progress(step, cfg.max_steps)
            out_of_time = minutes is not None and time.perf_counter() - started > minutes * 60
            if step % 250 == 0 or step == cfg.max_steps or out_of_time:
                record.update(validation_loss(ema, generated[val], truth[val], cfg.object_weight))
                state = {"step": step, "config": asdict(cfg)}
                weights = (refiner.state_dict(), ema.state_dict(), optimizer.state_dict())
                if disc is not None:  # first, so that a checkpoint never outruns its discriminator
                    disc_meta = {"step": step}
                    save_checkpoint(
                        out / "discriminator", disc.state_dict(), {}, disc_optimizer.state_dict(), disc_meta
                    )
                save_checkpoint(out / "checkpoint", *weights, state)
                save_refiner(ema, out / "refiner")
                log(json.dumps(record))
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if out_of_time:
                log(f"stopping after {minutes} minutes at step {step}")
                break
    return out / "refiner"


def run_refiner(
    cfg: RefinerTrainConfig, model_dir, out: str | Path, minutes: float | None = None, log=print, progress=None
) -> Path:
    """The whole recipe, resumable at every stage: OUT/pairs (the model's SDEdit pairs, chunk by chunk),
    then the refiner's training (OUT/checkpoint, OUT/log.jsonl) to OUT/refiner. `progress(stage, done,
    total)` reports either stage ("pairs": chunks, "training": steps)."""
    out = Path(out)

    def stage(name: str):
        return (lambda done, total: progress(name, done, total)) if progress else None

    write_pairs(model_dir, out / "pairs", cfg.pair_chunks, cfg.clips_per_chunk, log=log, progress=stage("pairs"))
    return train_refiner(cfg, out / "pairs", out, minutes=minutes, log=log, progress=stage("training"))


__all__ = [
    "RefinerTrainConfig",
    "load_refiner_config",
    "make_pairs",
    "write_pairs",
    "load_pairs",
    "train_refiner",
    "run_refiner",
    "save_refiner",
]
