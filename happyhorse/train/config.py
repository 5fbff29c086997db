"""Training run configuration: one typed dataclass, named presets, and TOML/JSON files.

A run is rebuilt from its saved config alone (`RUN/config.json`).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

PRECISIONS = ("auto", "float32", "bfloat16")  # of the model's forward; see TrainConfig.precision


def precision_problem(value: str) -> str | None:
    """What is wrong with a `precision` value ("must be auto, float32 or bfloat16, got ..."), or None;
    each config and the CLI put their own name in front."""
    if value in PRECISIONS:
        return None
    return f"must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, got {value!r}"


def precision_of_old_runs(cuda: bool) -> str:
    """The precision a run saved before `precision` existed ran in (autocast on a GPU only), so that it
    resumes as it ran."""
    return "bfloat16" if cuda else "float32"


@dataclass
class TrainConfig:
    # model and codecs
    model: str = "tiny"  # a preset of happyhorse.model.CONFIGS
    model_overrides: dict = field(default_factory=dict)  # e.g. {"prediction": "v", "depth": 8}
    text_encoder: str = "minilm"  # minilm | hash (instant, for tests)
    # MiniLM layers whose states the text tokens concatenate (None: the last; e.g. [0, 6]): with --init
    # from a model that read fewer, the new text input columns start at zero (load_init_weights)
    text_layers: tuple[int, ...] | None = None
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
    # optimisation
    batch_size: int = 16  # per process
    clip_repeats: int = 1  # samples per rendered clip, each at its own noise (rendering bounds a GPU run)
    # each odd clip of a step is the clip before it mirrored left to right, its caption's "left" and
    # "right" exchanged (trainer.mirrored): pairs that differ in direction alone, for a text input
    # that folds the two words together (MODEL_CARD.md); needs an even number of clips a step
    mirror_pairs: bool = False
    lr: float = 1e-3
    text_in_lr_scale: float = 1.0  # the text input projection's rate, as a multiple of lr (parameter_groups)
    self_condition_lr_scale: float = 1.0  # the same for the self-conditioning inputs (they start at zero)
    # parameter-name prefixes that train; every other weight stays frozen where it started (empty: all
    # train). ["video_self_in", "audio_self_in"] teaches self-conditioning to a shipped model as an
    # adapter: without the estimate it is exactly the model it started from
    trainable: tuple[str, ...] = ()
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    max_steps: int = 2000
    # a cool-down from a step of a run whose end was not known (warm-up, stable, decay): from
    # anneal_from the rate falls linearly to 2 % of lr over anneal_steps, and the run ends there
    anneal_from: int | None = None
    anneal_steps: int = 0
    # fine-tuning: a model directory (or its transformer/model.safetensors) whose weights start the
    # run instead of a random init; the architecture must match, except the video input and output
    # projections, which start fresh when the video codec differs (ignored when resuming a checkpoint)
    init_from: str | None = None
    # a fine-tune's leash: plus anchor_weight x the mean squared difference between the model's output
    # and the init_from model's (frozen) on the same inputs, over the samples given no self-conditioning
    # estimate (all samples for a model without it). It keeps what the model already did while a new
    # input or loss is learnt: CPU fine-tunes of the shipped model lost subject consistency (MODEL_CARD.md)
    anchor_weight: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    # flow matching
    sigma_mean: float = 0.0  # logit-normal location
    sigma_std: float = 1.0
    shift: float = 1.0
    audio_loss_weight: float = 1.0
    # a video token's loss weight is 1 + this x the share of its pixels that objects cover (the world's
    # exact object masks): objects cover ~3 % of the pixels (README.md) but all that a prompt is about. Measured at
    # 10 (MODEL_CARD.md): it smears objects, since a weight that depends on the target biases the optimum
    object_loss_weight: float = 0.0
    # the flow loss plus these weights x the mean squared change of the video's velocity error from one frame
    # to the next (temporal) and from one pixel to its neighbours (spatial): errors that flicker or smear
    # cost more, with the loss's minimiser unchanged (diffusion.flow.difference_loss)
    temporal_loss_weight: float = 0.0
    spatial_loss_weight: float = 0.0
    # share of each sample's video noise common to all latent frames (the mixed noise prior of PYoCo, Ge
    # et al. 2023): training on the noise that sampling with `noise_correlation` starts from; the run's
    # model stores it as its sampling default
    noise_correlation: float = 0.0
    # a contrastive term for samples given their soundtrack (TA2V) at noise >= audio_contrast_min_sigma:
    # the video is predicted twice, from its own sound and from the same scene's sound with every impact
    # moved by 0.15-0.5 s (either way), and the term tau e_own softplus(-(e_moved - e_own) / (tau e_own))
    # on the two video errors (e_own held constant in the scale), times this weight, asks the own sound to
    # predict the video better: a signal that rewards following the sound's timing directly
    # (MODEL_CARD.md, "The video ignores a given soundtrack"). Weight 1 pulls as hard as the flow loss
    audio_contrast_weight: float = 0.0
    audio_contrast_shift: tuple[float, float] = (0.15, 0.5)  # |shift| range, seconds
    audio_contrast_min_sigma: float = 0.5
    audio_contrast_temperature: float = 0.05  # tau: relative error gap that counts as one logit
    text_dropout: float = 0.1  # prompts replaced by "" so the model also learns the unconditional
    p_image: float = 0.3  # chance a sample is given its first frame (TI2V)
    p_audio: float = 0.3  # chance a sample is given its soundtrack (TA2V); both: TIA2V
    # bookkeeping
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500  # 0: never write sample clips
    checkpoint_every: int = 200
    num_workers: int = 1
    fsdp: bool = False  # shard parameters across processes (large configs under torchrun)
    # what the model's forward computes in (bfloat16 autocast, the loss in float32): auto is bfloat16 on a
    # GPU and on a CPU that multiplies it natively (AVX512-BF16 or AMX: a quarter faster a step on this
    # project's 2-core EPYC), else float32, as `happyhorse generate --dtype auto`; float32 or bfloat16 force one
    precision: str = "auto"
    # sampling defaults written into the model directory
    sampler: str = "euler"
    num_inference_steps: int = 16
    guidance_scale: float = 1.0
    audio_guidance_scale: float = 1.0

    def __post_init__(self):
        self.video_patch = tuple(self.video_patch)
        self.betas = tuple(self.betas)
        if not isinstance(self.audio_contrast_shift, (list, tuple)):
            raise ValueError(f"audio_contrast_shift must be [low, high] seconds, got {self.audio_contrast_shift!r}")
        self.audio_contrast_shift = tuple(self.audio_contrast_shift)
        self.text_layers = None if self.text_layers is None else tuple(self.text_layers)
        if isinstance(self.trainable, str) or not all(isinstance(p, str) and p for p in self.trainable):
            raise ValueError(f"trainable must be a list of parameter-name prefixes, got {self.trainable!r}")
        self.trainable = tuple(self.trainable)
        if (self.num_frames - 1) % self.video_patch[0]:
            raise ValueError(
                f"num_frames ({self.num_frames}) must be 1 + a multiple of patch_t ({self.video_patch[0]})"
            )
        if self.width % self.video_patch[2] or self.height % self.video_patch[1]:
            raise ValueError(f"width/height must be multiples of the patch size {self.video_patch[1:]}")
        if self.batch_size < 1 or self.max_steps < 1 or self.lr <= 0:
            raise ValueError("batch_size and max_steps must be >= 1 and lr > 0")
        for name in ("text_in_lr_scale", "self_condition_lr_scale"):
            if not 0 < getattr(self, name) <= 1000:
                raise ValueError(f"{name} must be in (0, 1000], got {getattr(self, name)}")
        if not 0 <= self.anchor_weight <= 1000:
            raise ValueError(f"anchor_weight must be in [0, 1000], got {self.anchor_weight}")
        if self.anneal_from is not None and (self.anneal_from < 0 or self.anneal_steps < 1):
            raise ValueError(
                f"anneal_from/anneal_steps: need a step >= 0 and >= 1 steps, got {self.anneal_from}/{self.anneal_steps}"
            )
        if self.clip_repeats < 1 or self.batch_size % self.clip_repeats:
            raise ValueError(
                f"clip_repeats must be >= 1 and divide batch_size ({self.batch_size}), got {self.clip_repeats}"
            )
        if self.mirror_pairs and (self.batch_size // self.clip_repeats) % 2:
            raise ValueError(
                f"mirror_pairs needs an even number of clips a step (batch_size / clip_repeats), got "
                f"{self.batch_size} / {self.clip_repeats}"
            )
        if problem := precision_problem(self.precision):
            raise ValueError(f"precision {problem}")
        if not 0 <= self.noise_correlation < 1:
            raise ValueError(f"noise_correlation must be in [0, 1), got {self.noise_correlation}")
        if not 0 <= self.object_loss_weight <= 1000:
            raise ValueError(f"object_loss_weight must be in [0, 1000], got {self.object_loss_weight}")
        for name in ("temporal_loss_weight", "spatial_loss_weight"):
            if not 0 <= getattr(self, name) <= 1000:
                raise ValueError(f"{name} must be in [0, 1000], got {getattr(self, name)}")
        if not 0 <= self.audio_contrast_weight <= 1000:
            raise ValueError(f"audio_contrast_weight must be in [0, 1000], got {self.audio_contrast_weight}")
        shift = self.audio_contrast_shift
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in shift)
        lo, hi = shift if len(shift) == 2 and numbers else (None, None)
        if lo is None or not 0 < lo <= hi <= self.seconds:
            raise ValueError(
                f"audio_contrast_shift must be [low, high] seconds with 0 < low <= high <= the clip's "
                f"{self.seconds:.2f} s, got {list(self.audio_contrast_shift)}"
            )
        if not 0 < self.audio_contrast_temperature <= 10:
            raise ValueError(f"audio_contrast_temperature must be in (0, 10], got {self.audio_contrast_temperature}")
        if not 0 <= self.audio_contrast_min_sigma < 1:
            raise ValueError(f"audio_contrast_min_sigma must be in [0, 1), got {self.audio_contrast_min_sigma}")
        if self.audio_contrast_weight > 0 and self.p_audio == 0:
            raise ValueError("audio_contrast_weight > 0 needs samples given their sound: p_audio is 0")
        for name in ("text_dropout", "p_image", "p_audio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


PRESETS: dict[str, dict] = {
    # minutes on a laptop CPU: 32x32, 4x4x4 pixel patches (192-d tokens), hash text encoder; after
    # 400 steps (~7 min) samples show the room's colours, the floor and coloured blobs (configs/tiny32.toml)
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
    """The settings of a .toml or .json config file (the training, codec and refiner recipes)."""
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
