"""Run configuration: what every run shares (`RunConfig`), the flow-matching recipe (`TrainConfig`),
named presets, and TOML/JSON files.

A run is rebuilt from its saved config alone (`RUN/config.json`). Settings of levers that were measured
and not shipped (docs/experiments.md; git tag lab-2026-12 has them) are read from an old run's
config where they are off, and refused by name where they are on.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..retired import read_config

PRECISIONS = ("auto", "float32", "bfloat16")  # of the forward; see RunConfig.precision


def precision_problem(value: str) -> str | None:
    """What is wrong with a `precision` value ("must be auto, float32 or bfloat16, got ..."), or None;
    each config and the CLI put their own name in front."""
    if value in PRECISIONS:
        return None
    return f"must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {value!r}"


@dataclass
class RunConfig:
    """The run loop's settings (happyhorse/train/harness.py), shared by every objective."""

    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 2000
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    num_workers: int = 1  # processes rendering world clips ahead of the step; the run is the same for any
    # what the forward computes in (bfloat16 autocast; loss, gradients, optimizer and EMA in float32): auto
    # is bfloat16 on a GPU and on a CPU that multiplies it natively (AVX512-BF16 or AMX), else float32
    precision: str = "auto"

    # settings of earlier runs, measured and not shipped: {name: its off value}
    RETIRED = {}

    def __post_init__(self):
        if problem := precision_problem(self.precision):
            raise ValueError(f"precision {problem}")
        counts = ("max_steps", "log_every", "checkpoint_every")
        if any(getattr(self, name) < 1 for name in counts) or self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError(
                f"{', '.join(counts)} must be >= 1 and warmup_steps, num_workers >= 0, got "
                f"{[getattr(self, n) for n in (*counts, 'warmup_steps', 'num_workers')]}"
            )
        if self.lr <= 0 or self.grad_clip <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"lr and grad_clip must be > 0 and ema_decay in [0, 1), got {self.lr}, "
                             f"{self.grad_clip}, {self.ema_decay}")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(**read_config(d, cls, cls.RETIRED, cls.__name__))

    @classmethod
    def old_precision(cls, cuda: bool) -> str:
        """The precision a run saved before `precision` existed ran in (autocast on a GPU only)."""
        return "bfloat16" if cuda else "float32"


# the flow-matching recipe's retired settings (docs/experiments.md): self-conditioning, anchoring,
# adapters, mirror pairs, per-input rates, wider text, object weights, difference losses, training
# noise correlation, the audio contrast, the cool-down
TRAIN_RETIRED = {
    "text_layers": None,
    "mirror_pairs": False,
    "text_in_lr_scale": 1.0,
    "self_condition_lr_scale": 1.0,
    "trainable": (),
    "anchor_weight": 0.0,
    "object_loss_weight": 0.0,
    "temporal_loss_weight": 0.0,
    "spatial_loss_weight": 0.0,
    "noise_correlation": 0.0,
    "audio_contrast_weight": 0.0,
    "audio_contrast_shift": (0.15, 0.5),
    "audio_contrast_min_sigma": 0.5,
    "audio_contrast_temperature": 0.05,
    "anneal_from": None,
    "anneal_steps": 0,
}
SAMPLING_KEYS = ("sampler", "num_inference_steps", "guidance_scale", "audio_guidance_scale")  # earlier flat form


@dataclass
class TrainConfig(RunConfig):
    """Flow matching of the single-stream model on world clips (`happyhorse train`)."""

    # model and codecs
    model: str = "tiny"  # a preset of happyhorse.model.CONFIGS
    model_overrides: dict = field(default_factory=dict)  # e.g. {"depth": 8, "dim": 384}
    text_encoder: str = "minilm"  # minilm | hash (instant, for tests)
    video_patch: tuple[int, int, int] = (4, 8, 8)
    # a trained video codec directory (`happyhorse train-codec` writes OUT/codec) instead of the exact
    # patch codec; frozen in training, and shipped in the model directory. video_patch must equal its cell
    video_codec: str | None = None
    audio_patch: int = 400
    audio_scale: float = 3.0
    # data: world clips; frames = 1 + k * patch_t so that frame 0 has a latent frame of its own
    width: int = 64
    height: int = 64
    fps: float = 12.0
    num_frames: int = 25
    sample_rate: int = 16000
    channels: int = 1
    # the mix of world scene kinds (world.sample.KINDS) by weight: physics, talk (faces saying a line), mixed
    world_kinds: dict = field(default_factory=lambda: {"physics": 1.0})
    # optimisation
    batch_size: int = 16  # per process
    clip_repeats: int = 1  # samples per rendered clip, each at its own noise (rendering bounds a GPU run)
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    # fine-tuning: a model directory (or its transformer/model.safetensors) whose weights start the run;
    # the architecture must match, except the video projections, which start fresh when the video codec
    # differs (ignored when resuming a checkpoint)
    init_from: str | None = None
    # flow matching: sigma = shift(sigmoid(N(sigma_mean, sigma_std)))
    sigma_mean: float = 0.0
    sigma_std: float = 1.0
    shift: float = 1.0
    audio_loss_weight: float = 1.0
    text_dropout: float = 0.1  # prompts replaced by "" so the model also learns the unconditional
    p_image: float = 0.3  # chance a sample is given its first frame (TI2V)
    p_audio: float = 0.3  # chance a sample is given its soundtrack (TA2V); both: TIA2V
    p_prefix: float = 0.0  # chance a sample continues its own first latent frames (and half the time their sound)
    p_keyframes: float = 0.0  # share of steps whose samples may be given their last frame and a keyframe
    p_reference: float = 0.0  # share of steps whose samples may be given their subject's reference image
    p_audio_span: float = 0.0  # chance a sample is given a random stretch of its soundtrack
    sample_every: int = 500  # preview clips every N steps (the CLI writes them); 0: never
    fsdp: bool = False  # shard parameters across processes (large configs under torchrun)
    # how the exported model samples (a SamplingConfig's fields; its shift defaults to the training shift)
    sampling: dict = field(default_factory=dict)

    RETIRED = TRAIN_RETIRED

    def __post_init__(self):
        super().__post_init__()
        self.video_patch = tuple(self.video_patch)
        self.betas = tuple(self.betas)
        if (self.num_frames - 1) % self.video_patch[0]:
            raise ValueError(
                f"num_frames ({self.num_frames}) must be 1 + a multiple of patch_t ({self.video_patch[0]})"
            )
        if self.width % self.video_patch[2] or self.height % self.video_patch[1]:
            raise ValueError(f"width/height must be multiples of the patch size {self.video_patch[1:]}")
        if self.batch_size < 1 or self.sample_every < 0:
            raise ValueError(
                f"batch_size must be >= 1 and sample_every >= 0, got {self.batch_size}, {self.sample_every}"
            )
        if self.clip_repeats < 1 or self.batch_size % self.clip_repeats:
            raise ValueError(
                f"clip_repeats must be >= 1 and divide batch_size ({self.batch_size}), got {self.clip_repeats}"
            )
        for name in ("text_dropout", "p_image", "p_audio", "p_prefix", "p_keyframes", "p_reference", "p_audio_span"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        from .data import check_kinds

        check_kinds(self.world_kinds)
        self.sampling_config()  # refused here, by name, rather than at the first export

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    def sampling_config(self):
        from ..diffusion.sampling import SamplingConfig

        return SamplingConfig.from_dict({"shift": self.shift, **self.sampling})

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A config, also of an earlier run: its flat sampling defaults (`sampler`, `guidance_scale`, ...)
        go into `sampling`, where they are not the defaults they always were."""
        d = dict(d)
        flat = {k: d.pop(k) for k in SAMPLING_KEYS if k in d}
        defaults = {"sampler": "euler", "num_inference_steps": 16, "guidance_scale": 1.0, "audio_guidance_scale": 1.0}
        flat = {k: v for k, v in flat.items() if v != defaults[k]}
        if flat:
            d["sampling"] = {**flat, **d.get("sampling", {})}
        return super().from_dict(d)


PRESETS: dict[str, dict] = {
    # minutes on a laptop CPU: 32x32, 4x4x4 pixel patches (192-d tokens), hash text encoder
    "tiny": {
        "model": "tiny",
        "model_overrides": {"absolute_positions": True},
        "text_encoder": "hash",
        "width": 32,
        "height": 32,
        "video_patch": (4, 4, 4),
        "batch_size": 16,
        "lr": 2e-3,
        "warmup_steps": 50,
        "sample_every": 400,
    },
    "small": {"model": "small", "batch_size": 16, "lr": 1e-3},
    "base": {"model": "base", "batch_size": 32, "lr": 5e-4, "width": 128, "height": 128},
}


def read_config_file(path: str | Path) -> dict:
    """The settings of a .toml or .json config file (the training, codec and distillation recipes)."""
    path = Path(path)
    if path.suffix not in (".toml", ".json") or not path.is_file():
        raise ValueError(f"CONFIG: {path} is not a .toml or .json file")
    try:
        return tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"CONFIG: {path} does not parse: {exc}") from None


def load_config(name_or_path: str, overrides: dict | None = None) -> TrainConfig:
    """A preset name (`tiny`, `small`, ...) or a .toml/.json file; a file may name a `preset` to extend."""
    path = Path(name_or_path)
    if name_or_path in PRESETS:
        values = dict(PRESETS[name_or_path])
    elif path.suffix in (".toml", ".json") and path.is_file():
        raw = read_config_file(path)
        base = raw.pop("preset", None)
        if base is not None and base not in PRESETS:
            raise ValueError(f"{path}: preset must be one of {', '.join(PRESETS)}, got {base!r}")
        values = {**(PRESETS[base] if base else {}), **raw}
    elif path.suffix in (".toml", ".json"):
        raise ValueError(f"CONFIG: no such file: {name_or_path}")
    else:
        raise ValueError(f"CONFIG: {name_or_path!r} is neither a preset ({', '.join(PRESETS)}) nor a .toml/.json file")
    values.update(overrides or {})
    return TrainConfig.from_dict(values)
