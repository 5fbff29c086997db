"""DMD-2 few-step distillation (Yin et al. 2024, "Improved Distribution Matching Distillation").

A student G, initialised from the teacher, makes a clip in K steps of the `renoise` sampler with no
guidance (one forward per step instead of a guided sampler's two or three). Its training signal is the
gap between two denoisers' x0 predictions on its own outputs, re-noised to a random level: the teacher
guided as its model directory says (classifier-free guidance, and autoguidance by its guide model,
each at its scales and noise interval: the distribution we want) and a "fake" denoiser trained online,
by the teacher's flow loss, on the student's outputs (the distribution we have). Moving each output
along (fake - real) moves the student's distribution toward the guided teacher's.

From DMD-2 we take: no regression loss, several fake updates per student update (two time-scale
rule), and training inputs from the student's own backward simulation (the partly denoised inputs it
meets when sampling). Left out: its GAN head (it needs real-data features and a discriminator).
Simplification: the fake updates of a step reuse that step's student outputs, each at a fresh noise
level, instead of drawing new outputs (each would cost up to K student forwards).

Video and audio are distilled together; given tokens (a first frame, a soundtrack) are conditions,
never moved, as in training. Everything random derives from (seed, step), so a resumed run continues
the same curve. The run loop is training's (happyhorse/train/harness.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..components import Components
from ..diffusion import add_noise, flow_loss, get_schedule
from ..diffusion.sampling import SamplingConfig
from ..model.positions import sequence_positions
from ..train import harness
from ..train.config import RunConfig
from ..train.data import StepBatches, loader, sample_generator

STEP_STREAM = 2**32 - 1  # the sample index of a step's own random stream (noise, levels, k): no sample has it


@dataclass
class DistillConfig(RunConfig):
    teacher: str | None = None  # a model directory; None: the embedded default model
    student_steps: int = 4  # K: the student's sampling steps (renoise sampler, no guidance)
    guidance_scale: float | None = None  # the teacher's classifier-free scales (default: its own)
    audio_guidance_scale: float | None = None
    batch_size: int = 8
    lr: float = 1e-5  # student
    fake_lr: float = 1e-5
    betas: tuple[float, float] = (0.0, 0.99)  # DMD-2's Adam: no first-moment smoothing of a moving target
    fake_updates: int = 5  # fake-denoiser updates per student update
    max_steps: int = 1000
    ema_decay: float = 0.99
    checkpoint_every: int = 50
    sigma_min: float = 0.02  # where the two denoisers are compared
    sigma_max: float = 0.98
    audio_loss_weight: float = 1.0
    p_image: float = 0.3  # chance a sample is given its first frame (TI2V)
    p_audio: float = 0.3  # chance a sample is given its soundtrack (TA2V)

    def __post_init__(self):
        super().__post_init__()
        self.betas = tuple(self.betas)
        if self.student_steps < 1:
            raise ValueError(f"student_steps: must be >= 1, got {self.student_steps}")
        if self.batch_size < 1 or self.fake_updates < 1:
            raise ValueError(f"batch_size and fake_updates must be >= 1, got {self.batch_size}, {self.fake_updates}")
        for name in ("p_image", "p_audio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        if self.fake_lr <= 0:
            raise ValueError(f"fake_lr must be > 0, got {self.fake_lr}")
        if not 0.0 < self.sigma_min < self.sigma_max < 1.0:
            raise ValueError(f"sigma_min/sigma_max: need 0 < min < max < 1, got {self.sigma_min}/{self.sigma_max}")
        SamplingConfig().with_overrides(None, self.guidance_scale, self.audio_guidance_scale)  # checks the scales


@dataclass
class Conditions:
    """One step's prompts and given tokens; the latents of the real clips serve only as given tokens."""

    video_x0: torch.Tensor  # [B, Nv, Cv]
    audio_x0: torch.Tensor  # [B, Na, Ca]
    video_clean: torch.Tensor  # [B, Nv] bool
    audio_clean: torch.Tensor  # [B, Na] bool
    text: torch.Tensor  # [2B, L, D]: the captions, then the empty prompt (classifier-free guidance)
    text_mask: torch.Tensor
    positions: torch.Tensor

    def impose(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The given tokens put back: they are conditions, never generated."""
        return (
            torch.where(self.video_clean[..., None], self.video_x0, video),
            torch.where(self.audio_clean[..., None], self.audio_x0, audio),
        )


def prepare_conditions(cfg: DistillConfig, parts: Components, batch: dict, device) -> Conditions:
    vc, ac = parts.video_codec, parts.audio_codec
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
    text, text_mask = parts.text_encoder.encode(list(batch["captions"]) + [""] * b)  # one call pads both alike
    positions = sequence_positions(grid, audio_x0.shape[1], text.shape[1], vc, ac, parts.defaults["fps"])
    return Conditions(*(t.to(device) for t in (video_x0, audio_x0, vclean, aclean, text, text_mask, positions)))


def denoised(model, video, audio, cond: Conditions, sigma: torch.Tensor, uncond: bool = False, autocast=False):
    """x0 predictions [video, audio] (float32) of `model` for the batch at per-sample noise levels sigma
    [B]: for the captions, or with `uncond` for the captions and then the empty prompt ([2B, ...])."""
    b, reps = video.shape[0], 2 if uncond else 1
    token_sigma = torch.cat([(~cond.video_clean).float(), (~cond.audio_clean).float()], dim=1) * sigma[:, None]
    with torch.autocast(video.device.type, torch.bfloat16, enabled=autocast):
        out = model(
            video.repeat(reps, 1, 1),
            audio.repeat(reps, 1, 1),
            cond.text[: reps * b],
            cond.text_mask[: reps * b],
            cond.positions,
            cond.video_clean.repeat(reps, 1),
            cond.audio_clean.repeat(reps, 1),
            token_sigma.repeat(reps, 1),
        )
    return [out.video.float(), out.audio.float()]  # the network predicts x0


def guided(teacher, guide, sampling: SamplingConfig, video, audio, cond: Conditions, sigma, autocast=False):
    """The teacher's x0 [video, audio] as its sampler makes it: each guidance term of `sampling` pushes
    the samples whose noise level lies in the term's interval (classifier-free guidance from the empty
    prompt's prediction, autoguidance from the guide model's conditional one; diffusion/guidance.py)."""
    b = video.shape[0]
    cfg, auto = sampling.classifier_free, sampling.autoguidance
    both = denoised(teacher, video, audio, cond, sigma, uncond=cfg is not None, autocast=autocast)
    cond_x0 = [x[:b] for x in both]
    x0 = cond_x0
    if cfg is not None:
        x0 = _where(sigma, cfg.interval, cfg.combine(cond_x0, [x[b:] for x in both]), x0)
    if auto is not None:
        weaker = denoised(guide, video, audio, cond, sigma, autocast=autocast)
        x0 = _where(sigma, auto.interval, auto.combine(x0, cond_x0, weaker), x0)
    return x0


def _where(sigma, interval, pushed, x0):
    """`pushed` for the samples whose sigma lies in `interval`, `x0` for the others."""
    inside = ((sigma >= interval[0]) & (sigma <= interval[1]))[:, None, None]
    return [torch.where(inside, p, x) for p, x in zip(pushed, x0, strict=True)]


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


def student_outputs(student, cond: Conditions, sigmas: list[float], k: int, g: torch.Generator, autocast=False):
    """The student's x0 from step k of its own K-step sampling (steps before k without gradients)."""
    b, nv, cv = cond.video_x0.shape
    na, ca = cond.audio_x0.shape[1:]
    device = cond.video_x0.device
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


def noised(cond: Conditions, x0v, x0a, sigma, g: torch.Generator):
    nv = torch.randn(x0v.shape, generator=g, device=x0v.device)
    na = torch.randn(x0a.shape, generator=g, device=x0a.device)
    s = sigma[:, None, None]
    video, audio = cond.impose(add_noise(x0v, nv, s), add_noise(x0a, na, s))
    return video, audio, nv, na


def student_sampling(teacher: SamplingConfig, steps: int) -> SamplingConfig:
    """How a student samples: `steps` renoise steps at the teacher's schedule shift, from independent
    noise (as it was trained), with no guidance of any kind (so no guide model) and no restart."""
    return SamplingConfig(sampler="renoise", num_inference_steps=steps, shift=teacher.shift, guidance=())


class DistributionMatching(harness.Objective):
    """DMD-2's objective: the student's loss is `dmd_loss` against the guided teacher; after each student
    step the fake denoiser takes `fake_updates` flow-matching steps on the student's outputs. The export
    is the EMA student as a model directory that samples in K renoise steps without guidance."""

    name = "dmd2"
    curves = ("fake_loss", "teacher_gap")

    def __init__(self, cfg: DistillConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self.autocast = harness.autocasts(cfg.precision, device)
        self.parts = Components.from_pretrained(cfg.teacher)
        self.parts.text_encoder.to(device)  # the frozen text encoder runs where the models do
        self.teacher = self.parts.transformer.float().eval().requires_grad_(False).to(device)
        guide = self.parts.guide_transformer
        self.guide = guide.float().eval().requires_grad_(False).to(device) if guide is not None else None
        self.sampling = self.parts.sampling.with_overrides(None, cfg.guidance_scale, cfg.audio_guidance_scale)
        self.model = copy.deepcopy(self.teacher).train().requires_grad_(True)  # the student
        self.fake = copy.deepcopy(self.teacher).train().requires_grad_(True)
        self.sigmas = get_schedule(cfg.student_steps, self.parts.sampling.shift)

    def modules(self):
        return {"fake": self.fake}

    def optimizers(self):
        cfg = self.cfg
        self._fake_optimizer = torch.optim.Adam(self.fake.parameters(), lr=cfg.fake_lr, betas=cfg.betas)
        return {
            "model": torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas),
            "fake": self._fake_optimizer,
        }

    def learning_rate(self, step):
        return self.cfg.lr

    def batches(self, start, end, rank, world_size):
        data = StepBatches(self.parts.world_config(), self.cfg.batch_size, self.cfg.seed, start, end)
        return loader(data, self.cfg.num_workers)

    def _generator(self, step: int) -> tuple[torch.Generator, torch.Generator]:
        """The step's stream on the CPU (levels, k) and where the models run (noise: a CPU draw copied to a
        GPU costs a step several times)."""
        g = sample_generator(self.cfg.seed, step, STEP_STREAM)
        if self.device.type == "cpu":
            return g, g
        return g, torch.Generator(self.device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))

    def _sigmas(self, b: int) -> torch.Tensor:
        """Noise levels [B] where the denoisers meet the student's outputs: uniform in [sigma_min, sigma_max]."""
        cfg = self.cfg
        return (cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(b, generator=self.g)).to(self.device)

    def loss(self, net, batch):
        cfg = self.cfg
        self.g, self.gn = self._generator(batch["step"])
        cond = self.cond = prepare_conditions(cfg, self.parts, batch, self.device)
        generated = self.generated = (~cond.video_clean, ~cond.audio_clean)
        self.has_audio = generated[1].any(-1).float()
        # 1. the student's outputs, from a random step of its own sampling
        k = int(torch.randint(cfg.student_steps, (1,), generator=self.g))
        x0v, x0a = student_outputs(net, cond, self.sigmas, k, self.gn, self.autocast)
        self.outputs = (x0v.detach(), x0a.detach())
        # 2. the distribution-matching loss against the guided teacher
        sigma = self._sigmas(x0v.shape[0])
        video_t, audio_t, _, _ = noised(cond, *self.outputs, sigma, self.gn)
        with torch.no_grad():
            real = guided(self.teacher, self.guide, self.sampling, video_t, audio_t, cond, sigma, self.autocast)
            fake = denoised(self.fake, video_t, audio_t, cond, sigma, autocast=self.autocast)
        loss_v = dmd_loss(x0v, real[0], fake[0], generated[0])
        loss_a = dmd_loss(x0a, real[1], fake[1], generated[1])
        loss = loss_v.mean() + cfg.audio_loss_weight * (loss_a * self.has_audio).mean()
        # how far the student's outputs are from what the guided teacher makes of them (noised: never 0)
        gap = ((x0v.detach() - real[0]).abs() * generated[0][..., None]).sum() / generated[0].sum().clamp(min=1)
        return loss, {"teacher_gap": gap.item() / x0v.shape[-1]}

    def after_step(self, batch):
        """3. The fake denoiser follows the student's distribution: the teacher's flow loss on its outputs."""
        cfg, cond, (x0v, x0a), generated = self.cfg, self.cond, self.outputs, self.generated
        optimizer = self._fake_optimizer
        losses = []
        for _ in range(cfg.fake_updates):
            s = self._sigmas(x0v.shape[0])
            vt, at, nv, na = noised(cond, x0v, x0a, s, self.gn)
            pv, pa = denoised(self.fake, vt, at, cond, s, autocast=self.autocast)  # as x0; the loss on v
            lv = flow_loss(pv, x0v, nv, vt, s[:, None, None], generated[0])
            la = flow_loss(pa, x0a, na, at, s[:, None, None], generated[1])
            loss = lv.mean() + cfg.audio_loss_weight * (la * self.has_audio).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.fake.parameters(), cfg.grad_clip)
            optimizer.step()
            losses.append(loss.item())
        return {"fake_loss": sum(losses) / len(losses)}

    def export(self, ema_state, out):
        student = copy.deepcopy(self.teacher).cpu()
        student.load_state_dict(ema_state)
        p = self.parts
        sampling = student_sampling(p.sampling, self.cfg.student_steps)
        Components(student, p.video_codec, p.audio_codec, p.text_encoder, sampling, p.defaults).save_pretrained(
            out / "model"
        )
        return out / "model", {}


def refuse_teacher_as_output(out: Path, cfg: DistillConfig) -> None:
    """Refuse a run directory whose model/ is the teacher itself."""
    teacher = Path(cfg.teacher).expanduser().resolve() if cfg.teacher is not None else None
    if teacher is not None and (out / "model").resolve() == teacher:
        raise ValueError(f"out: {out}/model is the teacher itself; choose another run directory")


def distill(
    cfg: DistillConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    log=print,
    progress=None,
) -> dict:
    """Distill until max_steps (or `minutes` of wall time). Writes under `out`: config.json, log.jsonl,
    checkpoint/ (student, its EMA, the fake denoiser, both optimizers), model/ (the EMA student as a
    model directory that samples in K renoise steps without guidance), loss.png."""
    out = Path(out)
    refuse_teacher_as_output(out, cfg)
    if cfg.teacher is not None:  # an absolute path: a resume from another directory finds the same teacher
        cfg = replace(cfg, teacher=str(Path(cfg.teacher).expanduser().resolve()))
    cfg = harness.resolve_config(cfg, out, resume, log)
    objective = DistributionMatching(cfg, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    return harness.run(objective, out, resume=resume, max_steps=max_steps, minutes=minutes, log=log, progress=progress)
