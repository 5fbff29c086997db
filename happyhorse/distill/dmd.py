"""DMD-2 few-step distillation (Yin et al. 2024, "Improved Distribution Matching Distillation").

A student G, initialised from the teacher, makes a clip in K steps of the `renoise` sampler with no
guidance (one forward per step instead of a guided sampler's two). Its training signal is the gap
between two denoisers' x0 predictions on its own outputs, re-noised to a random level: the teacher
with classifier-free guidance (the score of the distribution we want) and a "fake" denoiser trained
online, by the teacher's flow loss, on the student's outputs (the score of the distribution we have).
Moving each output along (fake - real) moves the student's distribution toward the guided teacher's.

From DMD-2 we take: no regression loss, several fake updates per student update (two time-scale
rule), and training inputs from the student's own backward simulation (the partly denoised inputs it
meets when sampling). Left out: its GAN head (it needs real-data features and a discriminator; noted
as the next step). Simplification: the fake updates of a step reuse that step's student outputs, each
at a fresh noise level, instead of drawing new outputs (each would cost up to K student forwards).

Video and audio are distilled together; given tokens (a first frame, a soundtrack) are conditions,
never moved, as in training. Everything random derives from (seed, step), so a resumed run
continues the same curve.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from ..diffusion import add_noise, flow_loss, get_schedule, predicted_x0
from ..media import atomic_directory, write_json_atomic
from ..pipeline import HappyHorsePipeline, SchedulerConfig, sequence_positions
from ..train.checkpoint import optimizer_state, optimizer_tensors
from ..train.config import TrainConfig, precision_of_old_runs, precision_problem
from ..train.trainer import StepBatches, autocasts, sample_generator, update_ema

STEP_STREAM = 2**32 - 1  # the sample index of a step's own random stream (noise, levels, k): no sample has it


@dataclass
class DistillConfig:
    teacher: str | None = None  # a model directory; None: the embedded default model
    student_steps: int = 4  # K: the student's sampling steps (renoise sampler, no guidance)
    guidance_scale: float | None = None  # the teacher's video guidance (default: its own)
    audio_guidance_scale: float | None = None
    batch_size: int = 8
    lr: float = 1e-5  # student
    fake_lr: float = 1e-5
    betas: tuple[float, float] = (0.0, 0.99)  # DMD-2's Adam: no first-moment smoothing of a moving target
    fake_updates: int = 5  # fake-denoiser updates per student update
    max_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.99
    sigma_min: float = 0.02  # where the two denoisers are compared
    sigma_max: float = 0.98
    audio_loss_weight: float = 1.0
    p_image: float = 0.3  # chance a sample is given its first frame (TI2V)
    p_audio: float = 0.3  # chance a sample is given its soundtrack (TA2V)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 50
    num_workers: int = 1
    precision: str = "auto"  # the three models' forwards under bfloat16 autocast, as TrainConfig.precision

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if problem := precision_problem(self.precision):
            raise ValueError(f"precision: {problem}")
        if self.student_steps < 1:
            raise ValueError(f"student_steps: must be >= 1, got {self.student_steps}")
        counts = ("batch_size", "max_steps", "fake_updates", "log_every", "checkpoint_every")
        if any(getattr(self, name) < 1 for name in counts):
            raise ValueError(f"{', '.join(counts)}: must be >= 1, got {[getattr(self, n) for n in counts]}")
        if self.num_workers < 0 or not 0.0 <= self.ema_decay < 1.0 or self.grad_clip <= 0:
            raise ValueError("num_workers must be >= 0, ema_decay in [0, 1) and grad_clip > 0")
        for name in ("p_image", "p_audio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.lr <= 0 or self.fake_lr <= 0:
            raise ValueError(f"lr and fake_lr must be > 0, got {self.lr} and {self.fake_lr}")
        if not 0.0 < self.sigma_min < self.sigma_max < 1.0:
            raise ValueError(f"sigma_min/sigma_max: need 0 < min < max < 1, got {self.sigma_min}/{self.sigma_max}")
        for name in ("guidance_scale", "audio_guidance_scale"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 30.0:
                raise ValueError(f"{name}: must be in [0, 30], got {value}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DistillConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown distillation config keys: {sorted(unknown)}")
        return cls(**d)


@dataclass
class Conditions:
    """One step's prompts and given tokens; the latents of the real clips serve only as given tokens."""

    video_x0: torch.Tensor  # [B, Nv, Cv]
    audio_x0: torch.Tensor  # [B, Na, Ca]
    video_clean: torch.Tensor  # [B, Nv] bool
    audio_clean: torch.Tensor  # [B, Na] bool
    text: torch.Tensor  # [2B, L, D]: the captions, then the empty prompt (the teacher's guidance)
    text_mask: torch.Tensor
    positions: torch.Tensor

    def impose(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The given tokens put back: they are conditions, never generated."""
        return (
            torch.where(self.video_clean[..., None], self.video_x0, video),
            torch.where(self.audio_clean[..., None], self.audio_x0, audio),
        )


def world_config(pipe: HappyHorsePipeline, cfg: DistillConfig) -> TrainConfig:
    """The world clips (prompts and conditions) at the teacher's own size and rate."""
    vc, ac, d = pipe.video_codec, pipe.audio_codec, pipe.defaults
    return TrainConfig(
        text_encoder="hash",  # unused: the teacher's encoder encodes the prompts
        video_patch=(vc.patch_t, vc.patch_h, vc.patch_w),
        width=d["width"],
        height=d["height"],
        fps=d["fps"],
        num_frames=vc.num_frames(max(1, round(d["seconds"] * d["fps"]))),
        sample_rate=ac.sample_rate,
        channels=ac.channels,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
    )


def prepare_conditions(cfg: DistillConfig, pipe: HappyHorsePipeline, batch: dict, device) -> Conditions:
    vc, ac = pipe.video_codec, pipe.audio_codec
    b = batch["video"].shape[0]
    grid = vc.latent_shape(*batch["video"].shape[1:4])
    video_x0 = vc.encode(batch["video"]).reshape(b, -1, vc.latent_dim)
    audio_x0 = ac.encode(batch["audio"])
    vclean = torch.zeros(b, video_x0.shape[1], dtype=torch.bool)
    aclean = torch.zeros(b, audio_x0.shape[1], dtype=torch.bool)
    for k, index in enumerate(batch["indices"]):
        u = torch.rand(2, generator=sample_generator(cfg.seed, batch["step"], index))
        if u[0] < cfg.p_image:
            vclean[k, : grid[1] * grid[2]] = True  # latent frame 0: the given first image
        if u[1] < cfg.p_audio:
            aclean[k] = True
    text, text_mask = pipe.text_encoder.encode(list(batch["captions"]) + [""] * b)  # one call pads both alike
    positions = sequence_positions(grid, audio_x0.shape[1], text.shape[1], vc, ac, pipe.defaults["fps"])
    parts = (video_x0, audio_x0, vclean, aclean, text, text_mask, positions)
    return Conditions(*(t.to(device) for t in parts))


def denoised(
    model,
    video,
    audio,
    cond: Conditions,
    sigma: torch.Tensor,
    guidance=(1.0, 1.0),
    interval=(0.0, 1.0),
    autocast: bool | None = None,
):
    """x0 predictions of `model` for the batch at per-sample noise levels sigma [B]; with guidance
    other than 1 on either modality, classifier-free guidance against the empty prompt for the samples
    whose sigma lies in `interval` (the teacher's own guidance interval, as its sampler guides).
    `autocast`: the forward under bfloat16 autocast (None: on a GPU only); the x0s are float32."""
    b = video.shape[0]
    use_cfg = guidance != (1.0, 1.0)
    reps = 2 if use_cfg else 1
    token_sigma = torch.cat([(~cond.video_clean).float(), (~cond.audio_clean).float()], dim=1) * sigma[:, None]
    text, text_mask = (cond.text, cond.text_mask) if use_cfg else (cond.text[:b], cond.text_mask[:b])
    enabled = video.device.type == "cuda" if autocast is None else autocast
    with torch.autocast(video.device.type, torch.bfloat16, enabled=enabled):
        out = model(
            video.repeat(reps, 1, 1),
            audio.repeat(reps, 1, 1),
            text,
            text_mask,
            cond.positions,
            cond.video_clean.repeat(reps, 1),
            cond.audio_clean.repeat(reps, 1),
            token_sigma.repeat(reps, 1),
        )
    s = sigma.repeat(reps)[:, None, None]
    prediction = model.cfg.prediction
    x0v = predicted_x0(out.video.float(), video.repeat(reps, 1, 1), s, prediction)
    x0a = predicted_x0(out.audio.float(), audio.repeat(reps, 1, 1), s, prediction)
    if use_cfg:
        inside = ((sigma >= interval[0]) & (sigma <= interval[1]))[:, None, None]
        x0v = torch.where(inside, x0v[b:] + guidance[0] * (x0v[:b] - x0v[b:]), x0v[:b])
        x0a = torch.where(inside, x0a[b:] + guidance[1] * (x0a[:b] - x0a[b:]), x0a[:b])
    return x0v, x0a


def dmd_loss(x0: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Per-sample distribution-matching loss [B] whose gradient in x0 is (fake - real), normalised by
    the mean |x0 - real| of the sample (DMD's weighting, which keeps the step size the same at every
    noise level), over the generated tokens only.

    x0, real, fake [B, N, C]; generated [B, N] bool. A sample with no generated token gives 0."""
    mask = generated[..., None].float()
    count = (mask.sum((1, 2)) * x0.shape[-1]).clamp(min=1)
    with torch.no_grad():
        weight = ((x0 - real).abs() * mask).sum((1, 2)) / count
        grad = (fake - real) / weight.clamp(min=1e-6)[:, None, None]
        target = x0 - grad
    return 0.5 * (((x0 - target) ** 2) * mask).sum((1, 2)) / count


def student_outputs(
    student, cond: Conditions, sigmas: list[float], k: int, g: torch.Generator, device, autocast: bool | None = None
):
    """The student's x0 from step k of its own K-step sampling (steps before k without gradients)."""
    b, nv, cv = cond.video_x0.shape
    na, ca = cond.audio_x0.shape[1:]
    ones = torch.ones(b, device=device)
    video, audio = cond.impose(
        torch.randn(b, nv, cv, generator=g, device=device), torch.randn(b, na, ca, generator=g, device=device)
    )
    with torch.no_grad():
        for i in range(k):
            x0v, x0a = denoised(student, video, audio, cond, sigmas[i] * ones, autocast=autocast)
            s = sigmas[i + 1]
            video = (1 - s) * x0v + s * torch.randn(x0v.shape, generator=g, device=device)
            audio = (1 - s) * x0a + s * torch.randn(x0a.shape, generator=g, device=device)
            video, audio = cond.impose(video, audio)
    return cond.impose(*denoised(student, video, audio, cond, sigmas[k] * ones, autocast=autocast))


def comparison_sigmas(cfg: DistillConfig, b: int, g: torch.Generator, device) -> torch.Tensor:
    """Noise levels [B] where the denoisers meet the student's outputs: uniform in [sigma_min, sigma_max]."""
    return (cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(b, generator=g)).to(device)


def noised(cond: Conditions, x0v, x0a, sigma, g: torch.Generator):
    nv = torch.randn(x0v.shape, generator=g, device=x0v.device)
    na = torch.randn(x0a.shape, generator=g, device=x0a.device)
    s = sigma[:, None, None]
    video, audio = cond.impose(add_noise(x0v, nv, s), add_noise(x0a, na, s))
    return video, audio, nv, na


def distill(
    cfg: DistillConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    log=print,
) -> dict:
    """Distill until max_steps (or `minutes` of wall time). Writes under `out`: config.json, log.jsonl,
    checkpoint/ (student, its EMA, the fake denoiser, both optimizers), model/ (the EMA student as a
    model directory whose defaults are K renoise steps without guidance), loss.png."""
    out = Path(out)
    check_run_directory(out, cfg)
    if resume and (out / "config.json").exists():
        saved_dict = json.loads((out / "config.json").read_text())
        saved_dict.setdefault("precision", precision_of_old_runs(torch.cuda.is_available()))
        saved = DistillConfig.from_dict(saved_dict)
        if saved != cfg:
            diff = sorted(k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v)
            log(f"resume: using the run's saved config; CONFIG differs in {diff}")
        cfg = saved
    elif cfg.teacher is not None:  # an absolute path: a resume from another directory finds the same teacher
        cfg = replace(cfg, teacher=str(Path(cfg.teacher).expanduser().resolve()))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cast = autocasts(cfg, device)
    pipe = HappyHorsePipeline.from_pretrained(cfg.teacher)
    pipe.text_encoder.to(device)  # the frozen text encoder runs where the models do
    teacher = pipe.transformer.float().eval().requires_grad_(False).to(device)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(teacher).eval()
    guidance = (
        cfg.guidance_scale if cfg.guidance_scale is not None else pipe.scheduler.guidance_scale,
        cfg.audio_guidance_scale if cfg.audio_guidance_scale is not None else pipe.scheduler.audio_guidance_scale,
    )
    opt_student = torch.optim.Adam(student.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_fake = torch.optim.Adam(fake.parameters(), lr=cfg.fake_lr, betas=cfg.betas)
    start_step = 0
    ckpt = out / "checkpoint"
    if resume and (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        student.load_state_dict(load_file(str(ckpt / "student.safetensors")))
        ema.load_state_dict(load_file(str(ckpt / "ema.safetensors")))
        fake.load_state_dict(load_file(str(ckpt / "fake.safetensors")))
        opt_student.load_state_dict(optimizer_state(load_file(str(ckpt / "opt_student.safetensors")), state["student"]))
        opt_fake.load_state_dict(optimizer_state(load_file(str(ckpt / "opt_fake.safetensors")), state["fake"]))
        start_step = state["step"]
        log(f"resumed from step {start_step}")
    elif resume:
        log(f"resume: no checkpoint in {ckpt}; starting from step 0")
    end_step = max_steps if max_steps is not None else cfg.max_steps
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", json.dumps(cfg.to_dict(), indent=1))
    if (out / "log.jsonl").exists():  # records past the checkpoint are steps that will run again
        kept = [x for x in (out / "log.jsonl").read_text().splitlines() if json.loads(x)["step"] <= start_step]
        write_json_atomic(out / "log.jsonl", "".join(x + "\n" for x in kept))
    sigmas = get_schedule(cfg.student_steps, pipe.scheduler.shift)
    world = world_config(pipe, cfg)
    loader = DataLoader(
        StepBatches(world, start_step, end_step),
        batch_size=None,
        num_workers=cfg.num_workers,
        prefetch_factor=2 if cfg.num_workers else None,
    )
    started = time.perf_counter()
    window, summary, step = _window(), {}, start_step - 1  # step: the last one run
    for batch in loader:
        step = batch["step"]
        g = sample_generator(cfg.seed, step, STEP_STREAM)
        cond = prepare_conditions(cfg, pipe, batch, device)
        generated = (~cond.video_clean, ~cond.audio_clean)
        has_audio = generated[1].any(-1).float()
        # 1. the student's outputs, from a random step of its own sampling
        k = int(torch.randint(cfg.student_steps, (1,), generator=g))
        # noise is drawn where the models run (a CPU draw copied to a GPU costs a step several times)
        gn = (
            g
            if device.type == "cpu"
            else torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
        )
        x0v, x0a = student_outputs(student, cond, sigmas, k, gn, device, cast)
        # 2. the distribution-matching update of the student
        b = x0v.shape[0]
        sigma = comparison_sigmas(cfg, b, g, device)
        video_t, audio_t, _, _ = noised(cond, x0v.detach(), x0a.detach(), sigma, gn)
        with torch.no_grad():
            real = denoised(teacher, video_t, audio_t, cond, sigma, guidance, pipe.scheduler.guidance_interval, cast)
            fake_x0 = denoised(fake, video_t, audio_t, cond, sigma, autocast=cast)
        loss_v = dmd_loss(x0v, real[0], fake_x0[0], generated[0])
        loss_a = dmd_loss(x0a, real[1], fake_x0[1], generated[1])
        loss = loss_v.mean() + cfg.audio_loss_weight * (loss_a * has_audio).mean()
        opt_student.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt_student.step()
        update_ema(ema, student, step, cfg.ema_decay)
        # 3. the fake denoiser follows the student's distribution: the teacher's flow loss on its outputs
        fake_losses = []
        for _ in range(cfg.fake_updates):
            s = comparison_sigmas(cfg, b, g, device)
            vt, at, nv, na = noised(cond, x0v.detach(), x0a.detach(), s, gn)
            pv, pa = denoised(fake, vt, at, cond, s, autocast=cast)  # as x0; the loss is the teacher's, on v
            lv = flow_loss(pv, x0v.detach(), nv, vt, s[:, None, None], "x0", generated[0])
            la = flow_loss(pa, x0a.detach(), na, at, s[:, None, None], "x0", generated[1])
            fake_loss = lv.mean() + cfg.audio_loss_weight * (la * has_audio).mean()
            opt_fake.zero_grad(set_to_none=True)
            fake_loss.backward()
            torch.nn.utils.clip_grad_norm_(fake.parameters(), cfg.grad_clip)
            opt_fake.step()
            fake_losses.append(fake_loss.item())
        # how far the student's outputs are from what the guided teacher makes of them (noised: never 0)
        with torch.no_grad():
            gap = (((x0v - real[0]).abs() * generated[0][..., None]).sum() / generated[0].sum().clamp(min=1)).item()
        window["steps"] += 1
        window["loss"].append(loss.item())
        window["fake"].append(float(np.mean(fake_losses)))
        window["gap"].append(gap / x0v.shape[-1])
        done = step + 1
        if done % cfg.log_every == 0 or done == end_step:
            elapsed = time.perf_counter() - window["t"]
            record = {
                "step": done,
                "loss": float(np.mean(window["loss"])),
                "fake_loss": float(np.mean(window["fake"])),
                "teacher_gap": float(np.mean(window["gap"])),
                "grad_norm": float(grad_norm),
                "steps_per_s": window["steps"] / elapsed,
                "elapsed_s": time.perf_counter() - started,
            }
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            log(json.dumps(record))
            summary = record
            window = _window()
        out_of_time = minutes is not None and time.perf_counter() - started > minutes * 60
        if done % cfg.checkpoint_every == 0 or done == end_step or out_of_time:
            _save(out, pipe, cfg, student, ema, fake, opt_student, opt_fake, done)
        if out_of_time:
            log(f"stopping after {minutes} minutes at step {done}")
            break
    plot_distill_loss(out)
    return {"step": step + 1, "log": summary, "out": str(out)}


def check_run_directory(out: Path, cfg: DistillConfig) -> None:
    """Refuse a run directory that would overwrite the teacher or that belongs to a training run."""
    teacher = Path(cfg.teacher).expanduser().resolve() if cfg.teacher is not None else None
    if teacher is not None and (out / "model").resolve() == teacher:
        raise ValueError(f"out: {out}/model is the teacher itself; choose another run directory")
    if (out / "checkpoint" / "optimizer.safetensors").exists():
        raise ValueError(f"out: {out} holds a training run (checkpoint/optimizer.safetensors); choose another")


def _window() -> dict:
    return {"t": time.perf_counter(), "steps": 0, "loss": [], "fake": [], "gap": []}


def _save(out: Path, pipe, cfg: DistillConfig, student, ema, fake, opt_student, opt_fake, step: int) -> None:
    """The checkpoint (atomically, safetensors and JSON only) and the EMA student as `out/model`."""
    with atomic_directory(out / "checkpoint") as staging:
        for name, model in (("student", student), ("ema", ema), ("fake", fake)):
            save_file({k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()},
                      str(staging / f"{name}.safetensors"))  # fmt: skip
        metas = {}
        for name, opt in (("student", opt_student), ("fake", opt_fake)):
            tensors, metas[name] = optimizer_tensors(opt.state_dict())
            save_file({k: v.cpu() for k, v in tensors.items()}, str(staging / f"opt_{name}.safetensors"))
        (staging / "state.json").write_text(json.dumps({"step": step, **metas}, indent=1))
    export = copy.deepcopy(ema).cpu().float()
    scheduler = student_scheduler(pipe.scheduler, cfg.student_steps)
    HappyHorsePipeline(
        export, pipe.video_codec, pipe.audio_codec, pipe.text_encoder, scheduler, pipe.defaults
    ).save_pretrained(out / "model")


def student_scheduler(teacher: SchedulerConfig, steps: int) -> SchedulerConfig:
    """A student's sampling defaults: the teacher's shift, `steps` renoise steps, no guidance of any kind,
    no restart."""
    return replace(
        teacher,
        sampler="renoise",
        num_inference_steps=steps,
        guidance_scale=1.0,
        audio_guidance_scale=1.0,
        guidance_interval=(0.0, 1.0),
        autoguidance_scale=1.0,  # the student carries no guide model
        audio_autoguidance_scale=1.0,
        guide_skip_blocks=(),
        guide_frame_local_blocks=(),
        restarts=0,  # a few-step student's schedule has no band to walk again
    )


def plot_distill_loss(out: Path) -> None:
    """loss.png: the fake denoiser's flow loss and the student's gap to the guided teacher, by step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = out / "log.jsonl"
    records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    if not records:
        return
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["fake_loss"] for r in records], label="fake denoiser flow loss")
    ax.plot(steps, [r["teacher_gap"] for r in records], label="|student x0 - guided teacher x0|")
    ax.set_xlabel("student step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
