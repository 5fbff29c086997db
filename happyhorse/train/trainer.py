"""Flow-matching training of the single-stream model on world clips (`happyhorse train`): one process,
or DDP/FSDP under `torchrun`, in the shared run loop (harness.py).

Everything random in a step is a function of (seed, step, global sample index): which clips, which
noise level, which noise, whether the prompt is dropped, whether the first frame or the soundtrack is
given. So a resumed run continues the same loss curve exactly, and N processes with batch B compute
the same gradients as one process with batch N x B.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..components import Components, build_components
from ..conditioning import frame_time, reference_time, still_positions, still_tokens
from ..diffusion import add_noise, flow_loss, shift_sigma
from ..model import SingleStreamTransformer
from ..model.positions import sequence_positions
from ..world import WorldConfig
from . import harness
from .config import TrainConfig
from .data import StepBatches, condition_generator, loader, sample_generator

SIGMA_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the loss is also logged per noise-level bin (minRF)
VIDEO_PROJECTIONS = ("video_in.weight", "video_in.bias", "video_out.weight", "video_out.bias")


@dataclass
class StepInputs:
    """One step's encoded batch with its per-sample noise level, noise, prompts and conditions."""

    video_x0: torch.Tensor  # [B, Nv, Cv]
    audio_x0: torch.Tensor  # [B, Na, Ca]
    video_t: torch.Tensor  # noised, clean where given
    audio_t: torch.Tensor
    video_noise: torch.Tensor
    audio_noise: torch.Tensor
    sigma: torch.Tensor  # [B]
    video_clean: torch.Tensor  # [B, Nv] bool: given tokens (latent frame 0 for TI2V)
    audio_clean: torch.Tensor  # [B, Na] bool: given soundtrack (TA2V)
    text: torch.Tensor  # [B, L, D]
    text_mask: torch.Tensor  # [B, L] bool
    positions: torch.Tensor  # [Nv + Na + L, 3]
    video_keep: torch.Tensor | None = None  # [B, Nv] bool: False for still slots a sample is not given


def world_of(cfg: TrainConfig) -> WorldConfig:
    return WorldConfig(cfg.width, cfg.height, cfg.fps, cfg.seconds, cfg.sample_rate, cfg.channels)


def prepare_step(cfg: TrainConfig, parts: Components, batch: dict, device) -> StepInputs:
    """Encode a batch and draw its per-sample noise level, noise, prompt dropout and conditions.

    On a GPU the noise is drawn there, from a generator seeded by the sample's own: one sample's
    noise on the CPU is ~0.3 M numbers, and a batch of them would cost the GPU step several times."""
    device = torch.device(device)
    vc, ac = parts.video_codec, parts.audio_codec
    b = batch["video"].shape[0]
    grid = vc.latent_shape(*batch["video"].shape[1:4])  # latent (t, h, w)
    video_x0 = vc.encode(batch["video"].to(device, non_blocking=True)).reshape(b, -1, vc.latent_dim)
    audio_x0 = ac.encode(batch["audio"].to(device, non_blocking=True))
    nv, na = video_x0.shape[1], audio_x0.shape[1]
    sigmas, vnoise, anoise, prompts = [], [], [], []
    vclean = torch.zeros(b, nv, dtype=torch.bool)
    aclean = torch.zeros(b, na, dtype=torch.bool)
    for k, index in enumerate(batch["indices"]):
        g = sample_generator(cfg.seed, batch["step"], index)
        u = torch.rand(4, generator=g)  # u[3] is drawn and unused: every run before keeps its curve
        sigmas.append(torch.sigmoid(torch.randn(1, generator=g) * cfg.sigma_std + cfg.sigma_mean))
        noise_g = g
        if device.type != "cpu":
            noise_g = torch.Generator(device).manual_seed(int(torch.randint(2**62, (1,), generator=g)))
        vnoise.append(torch.randn(nv, vc.latent_dim, generator=noise_g, device=device))
        anoise.append(torch.randn(na, ac.latent_dim, generator=noise_g, device=device))
        prompts.append("" if u[0] < cfg.text_dropout else batch["captions"][k])
        if u[1] < cfg.p_image:
            vclean[k, : grid[1] * grid[2]] = True  # latent frame 0 is the given first image
        if u[2] < cfg.p_audio:
            aclean[k] = True
    # a clip to continue, its last frame, a keyframe (issue 43): drawn from streams of their own, so that
    # a run without them keeps its curve
    still_frames = step_stills(cfg, batch["step"], batch["video"].shape[1])  # frame indices; None: the reference
    keep = torch.ones(b, len(still_frames), dtype=torch.bool)
    for k, index in enumerate(batch["indices"]):
        c = condition_generator(cfg.seed, batch["step"], index)
        v = torch.rand(4, generator=c)
        if v[0] < cfg.p_prefix and grid[0] > 2:  # the first m latent frames (and, half the time, their sound)
            m = int(torch.randint(2, grid[0], (1,), generator=c))
            vclean[k, : m * grid[1] * grid[2]] = True
            if v[1] < 0.5:
                seconds = (1 + (m - 1) * vc.patch_t) / cfg.fps
                aclean[k, : int(seconds * ac.sample_rate) // ac.patch] = True
        if v[2] < cfg.p_audio_span and na > 1:  # any stretch of the soundtrack given (a line, a sound to keep)
            first = int(torch.randint(0, na - 1, (1,), generator=c))
            aclean[k, first : int(torch.randint(first + 1, na + 1, (1,), generator=c))] = True
        if still_frames:
            keep[k] = torch.rand(len(still_frames), generator=c) < 0.5
    sigma = shift_sigma(torch.cat(sigmas), cfg.shift).to(device)
    vclean, aclean = vclean.to(device), aclean.to(device)
    vnoise, anoise = torch.stack(vnoise), torch.stack(anoise)
    s = sigma[:, None, None]
    video_t = torch.where(vclean[..., None], video_x0, add_noise(video_x0, vnoise, s))
    audio_t = torch.where(aclean[..., None], audio_x0, add_noise(audio_x0, anoise, s))
    text, text_mask = parts.text_encoder.encode(prompts)
    extra, video_keep = None, None
    if still_frames:  # the given frames as clean still tokens after the clip's; slots a sample lacks are masked
        images = [batch["reference"] if f is None else batch["video"][:, f] for f in still_frames]
        stills = still_tokens(vc, torch.stack(images, 1).to(device)).to(video_x0.dtype)
        per = grid[1] * grid[2]
        video_x0, video_t = torch.cat([video_x0, stills], 1), torch.cat([video_t, stills], 1)
        vnoise = torch.cat([vnoise, torch.zeros_like(stills)], 1)
        vclean = torch.cat([vclean, torch.ones(b, stills.shape[1], dtype=torch.bool, device=device)], 1)
        video_keep = torch.cat([torch.ones(b, nv, dtype=torch.bool), keep.repeat_interleave(per, dim=1)], 1)
        times = [reference_time(0) if f is None else frame_time(f, vc.patch_t) for f in still_frames]
        extra = still_positions(times, grid[1:])
    positions = sequence_positions(grid, na, text.shape[1], vc, ac, cfg.fps, extra)
    tensors = (video_x0, audio_x0, video_t, audio_t, vnoise, anoise, sigma, vclean, aclean, text, text_mask, positions)
    inputs = StepInputs(*(t.to(device) for t in tensors))
    inputs.video_keep = None if video_keep is None else video_keep.to(device)
    return inputs


def step_stills(cfg: TrainConfig, step: int, num_frames: int) -> list[int | None]:
    """The stills of a step: in a share p_keyframes of steps the last frame and one keyframe drawn for the
    step, in a share p_reference the subject's reference (None); each sample is then given each with
    probability 1/2. Stills are per step so that the batch shares one sequence layout."""
    g = condition_generator(cfg.seed, step, -1)
    u = torch.rand(2, generator=g)
    stills: list[int | None] = []
    if u[0] < cfg.p_keyframes:
        stills += [num_frames - 1, int(torch.randint(1, num_frames - 1, (1,), generator=g))]
    if u[1] < cfg.p_reference:
        stills.append(None)
    return stills


def token_sigmas(x: StepInputs) -> torch.Tensor:
    """Each token's noise level [B, Nv + Na], as the model reads it: the sample's sigma, 0 where given."""
    return torch.cat([(~x.video_clean).float() * x.sigma[:, None], (~x.audio_clean).float() * x.sigma[:, None]], 1)


def step_loss(model, x: StepInputs, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """Mean flow loss over the batch (bfloat16 forward where cfg.precision says, the loss in float32),
    and its per-sample video and audio parts for logging."""
    autocast = harness.autocasts(cfg.precision, x.video_t.device)
    with torch.autocast(x.video_t.device.type, torch.bfloat16, enabled=autocast):
        out = model(
            x.video_t,
            x.audio_t,
            x.text,
            x.text_mask,
            x.positions,
            x.video_clean,
            x.audio_clean,
            token_sigmas(x),
            video_mask=x.video_keep,
        )
    s = x.sigma[:, None, None]
    loss_v = flow_loss(out.video.float(), x.video_x0, x.video_noise, x.video_t, s, ~x.video_clean)
    loss_a = flow_loss(out.audio.float(), x.audio_x0, x.audio_noise, x.audio_t, s, ~x.audio_clean)
    # a sample whose audio is all given has no audio loss; averaging over the whole batch (not over the
    # samples with audio loss) keeps N processes x B samples equal to one process with N x B
    has_audio = (~x.audio_clean).any(-1).float()
    loss = loss_v.mean() + cfg.audio_loss_weight * (loss_a * has_audio).mean()
    return loss, {"video": loss_v.detach(), "audio": loss_a.detach(), "has_audio": has_audio}


def build_run_components(cfg: TrainConfig) -> Components:
    """A fresh model directory's components for `cfg` (seeded by it), over its trained video codec if
    it names one."""
    torch.manual_seed(cfg.seed)
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
    return build_components(
        cfg.model,
        text_encoder=cfg.text_encoder,
        video_patch=cfg.video_patch,
        audio_patch=cfg.audio_patch,
        sample_rate=cfg.sample_rate,
        channels=cfg.channels,
        audio_scale=cfg.audio_scale,
        defaults={"width": cfg.width, "height": cfg.height, "fps": cfg.fps, "seconds": cfg.seconds},
        sampling=cfg.sampling_config(),
        video_codec=video_codec,
        **cfg.model_overrides,
    )


def load_init_weights(source: str | Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The float32 state of `source` (a model directory or a .safetensors file) for `model`, with a clear
    error when it was trained for another architecture. Only the video input and output projections
    may differ in shape (a model moved to another video codec): those keep `model`'s fresh init."""
    from safetensors.torch import load_file

    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "transformer" / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {source} is neither a model directory nor a .safetensors file")
    state = load_file(str(path))
    expected = model.state_dict()
    for k in VIDEO_PROJECTIONS:
        if k in state and k in expected and state[k].shape != expected[k].shape:
            state[k] = expected[k]
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    mismatched = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"init_from: {source} does not fit this config's model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, other shapes {mismatched[:3]}); set model/model_overrides to its own"
        )
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


class FlowMatching(harness.Objective):
    """The flow-matching objective: x_sigma = (1 - sigma) x0 + sigma eps, the loss on v = eps - x0, given
    tokens clean and without loss; the export is a model directory (`RUN/model`)."""

    name = "flow_matching"
    curves = ("loss", "loss_by_sigma")

    def __init__(self, cfg: TrainConfig, device: torch.device, fresh: bool = True):
        """`fresh`: the run starts at step 0, from `init_from`'s weights where given (a resumed run's
        checkpoint holds its own, and `init_from` need not be there any more)."""
        self.cfg, self.device = cfg, device
        self.parts = build_run_components(cfg)
        self.parts.text_encoder.to(device)  # the frozen text encoder and video codec run where the model trains
        self.parts.video_codec.to(device)
        self.model = self.parts.transformer.train().to(device)
        if cfg.init_from and fresh:
            self.model.load_state_dict(load_init_weights(cfg.init_from, self.model))
        self.fsdp = cfg.fsdp
        self.flops_per_token = None

    def optimizers(self):
        cfg = self.cfg
        return {"model": torch.optim.AdamW(self.model.parameters(), cfg.lr, cfg.betas, weight_decay=cfg.weight_decay)}

    def batches(self, start, end, rank, world_size):
        cfg = self.cfg
        data = StepBatches(
            world_of(cfg),
            cfg.batch_size,
            cfg.seed,
            start,
            end,
            rank,
            world_size,
            cfg.clip_repeats,
            cfg.world_kinds,
            references=cfg.p_reference > 0,
        )
        return loader(data, cfg.num_workers, pin_memory=self.device.type == "cuda")

    def loss(self, net, batch):
        x = prepare_step(self.cfg, self.parts, batch, self.device)
        lengths = (x.video_t.shape[1], x.audio_t.shape[1], x.text.shape[1])
        if self.flops_per_token is None:
            self.flops_per_token = self.model.flops_per_token(lengths)
        loss, parts = step_loss(net, x, self.cfg)
        per_sample = parts["video"] + self.cfg.audio_loss_weight * parts["audio"] * parts["has_audio"]
        bins = {f"{SIGMA_BINS[i]:.1f}-{SIGMA_BINS[i + 1]:.1f}": [] for i in range(len(SIGMA_BINS) - 1)}
        names = list(bins)
        for s, value in zip(x.sigma.cpu().tolist(), per_sample.cpu().tolist(), strict=True):
            bins[names[min(int(s / 0.2), 4)]].append(value)
        tokens = float(len(x.sigma) * sum(lengths))
        return loss, {"loss_by_sigma": bins, "tokens": tokens, "flops": tokens * self.flops_per_token}

    def export_due(self, step):
        return self.cfg.sample_every > 0 and step % self.cfg.sample_every == 0

    def export(self, ema_state, out):
        ema = SingleStreamTransformer(self.model.cfg)
        ema.load_state_dict(ema_state)
        p = self.parts
        Components(ema, p.video_codec, p.audio_codec, p.text_encoder, p.sampling, p.defaults).save_pretrained(
            out / "model"
        )
        return out / "model", {}


def train(
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    minutes: float | None = None,
    log=print,
    progress=None,
    on_export=None,
) -> dict:
    """Train until max_steps (or `minutes` of wall time); return the run's summary. Writes, under `out`:
    config.json, log.jsonl, checkpoint/, model/ (EMA weights, loadable by --model), loss.png.
    `on_export(model_dir, step, last)` runs after each export (the CLI writes preview clips there)."""
    _, _, device = harness.setup_distributed()
    cfg = harness.resolve_config(cfg, Path(out), resume, log)
    fresh = not (resume and (Path(out) / "checkpoint" / "state.json").exists())
    objective = FlowMatching(cfg, device, fresh)
    return harness.run(
        objective, out, resume=resume, max_steps=max_steps, minutes=minutes, log=log, progress=progress,
        on_export=on_export,
    )  # fmt: skip
