"""A model directory's components (DESIGN.md section 4): what training writes and the pipeline reads.

`model_index.json`, then one folder per component with its `config.json` and, where it has weights,
`model.safetensors`: `transformer/`, an optional `guide_transformer/` (the weaker model autoguidance
steers away from), `video_codec/`, `audio_codec/`, `text_encoder/`, and `scheduler/` (the sampling
config). Training and distillation build and save these without importing the inference pipeline.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .codecs import Codec, PatchAudioCodec, PatchVideoCodec, TextEncoder
from .diffusion.sampling import SamplingConfig
from .media import atomic_directory
from .model import CONFIGS, SingleStreamTransformer, TransformerConfig

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default_model"
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_guide(sampling: SamplingConfig, guide: SingleStreamTransformer | None) -> None:
    """A sampling config with autoguidance needs the guide model it steers away from."""
    if sampling.autoguidance is not None and guide is None:
        raise ValueError(
            "sampling: autoguidance needs a guide model (a guide_transformer/ in the model directory, or "
            "set_guide); there is none"
        )


def default_settings(defaults: dict | None = None) -> dict:
    """The clip a model makes when a call names none: size, frame rate, length."""
    return {"width": 64, "height": 64, "fps": 12.0, "seconds": 2.0, **(defaults or {})}


@dataclass
class Components:
    """Everything a model directory holds, loaded; `guide_transformer` only for autoguidance."""

    transformer: SingleStreamTransformer
    video_codec: Codec  # PatchVideoCodec or AutoencoderVideoCodec
    audio_codec: PatchAudioCodec
    text_encoder: TextEncoder
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    defaults: dict = field(default_factory=default_settings)
    guide_transformer: SingleStreamTransformer | None = None

    def __post_init__(self):
        check_guide(self.sampling, self.guide_transformer)

    def world_config(self):
        """The world's clip settings that match this model's defaults: its size, frame rate, sound, and its
        length rounded to whole latent frames, so a world clip and a generated one line up frame for frame
        (evaluation's ground truth, distillation's prompts, training previews)."""
        from .world import WorldConfig

        d, ac = self.defaults, self.audio_codec
        frames = self.video_codec.num_frames(max(1, round(d["seconds"] * d["fps"])))
        return WorldConfig(d["width"], d["height"], d["fps"], frames / d["fps"], ac.sample_rate, ac.channels)

    def save_pretrained(self, directory: str | os.PathLike, weights_dtype: torch.dtype = torch.float32) -> Path:
        """Write the model directory beside the target, then swap it in (never a half-written one).
        `weights_dtype=torch.float16` halves the files (the embedded default model ships so)."""
        if weights_dtype not in WEIGHT_DTYPES:
            raise ValueError(f"weights_dtype: must be float32, float16 or bfloat16, got {weights_dtype}")
        directory = Path(directory)
        with atomic_directory(directory) as staging:
            _save_transformer(self.transformer, staging / "transformer", weights_dtype)
            if self.guide_transformer is not None:
                _save_transformer(self.guide_transformer, staging / "guide_transformer", weights_dtype)
            self.video_codec.save_pretrained(staging / "video_codec")
            self.audio_codec.save_pretrained(staging / "audio_codec")
            self.text_encoder.save_pretrained(staging / "text_encoder")
            (staging / "scheduler").mkdir()
            (staging / "scheduler" / "config.json").write_text(json.dumps(self.sampling.to_dict(), indent=1))
            index = {
                "_class_name": "HappyHorsePipeline",
                "transformer": "SingleStreamTransformer",
                "video_codec": self.video_codec.type,
                "audio_codec": self.audio_codec.type,
                "text_encoder": self.text_encoder.type,
                "scheduler": "SamplingConfig",
                "defaults": self.defaults,
            }
            if self.guide_transformer is not None:
                index["guide_transformer"] = "SingleStreamTransformer"
            (staging / "model_index.json").write_text(json.dumps(index, indent=1))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike | None = None) -> Components:
        """A model directory's components on the CPU in float32; None: the embedded default model."""
        directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        index = read_index(directory)
        if "refiner" in index:
            raise ValueError(
                f"model: {directory} has a refiner/ component, a stage measured and not shipped "
                "(docs/experiments.md; git tag lab-2026-12 reads it)"
            )
        sampling = SamplingConfig.from_dict(json.loads((directory / "scheduler" / "config.json").read_text()))
        guide = load_transformer(directory / "guide_transformer") if "guide_transformer" in index else None
        return cls(
            load_transformer(directory / "transformer"),
            Codec.from_pretrained(directory / "video_codec"),
            Codec.from_pretrained(directory / "audio_codec"),
            Codec.from_pretrained(directory / "text_encoder"),
            sampling,
            default_settings(index.get("defaults")),
            guide,
        )


def read_index(directory: Path) -> dict:
    """model_index.json of a model directory, or a FileNotFoundError that says what to pass instead."""
    path = directory / "model_index.json"
    if path.is_file():
        return json.loads(path.read_text())
    if directory == DEFAULT_MODEL_DIR:
        raise FileNotFoundError(
            f"no embedded default model at {directory}; pass a model directory (--model DIR), "
            "e.g. the DIR/model written by `happyhorse train`"
        )
    raise FileNotFoundError(f"model: {directory} is not a model directory (no model_index.json)")


def _save_transformer(model: SingleStreamTransformer, directory: Path, weights_dtype: torch.dtype) -> None:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(model.cfg.to_dict(), indent=1))
    state = {k: v.detach().to(weights_dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def load_transformer(directory: str | os.PathLike) -> SingleStreamTransformer:
    """A transformer folder (config.json + model.safetensors), in float32."""
    directory = Path(directory)
    model = SingleStreamTransformer(TransformerConfig.from_dict(json.loads((directory / "config.json").read_text())))
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model


def build_components(
    model: str | TransformerConfig = "tiny",
    text_encoder: str = "minilm",
    video_patch: tuple[int, int, int] = (4, 8, 8),
    audio_patch: int = 400,
    sample_rate: int = 16000,
    channels: int = 1,
    audio_scale: float = 3.0,
    defaults: dict | None = None,
    sampling: SamplingConfig | None = None,
    video_codec: Codec | None = None,
    **overrides,
) -> Components:
    """Freshly initialised components: codecs first, then a transformer whose input widths match them.
    `video_codec` (e.g. a trained AutoencoderVideoCodec) replaces the exact patch codec of `video_patch`;
    `overrides` are transformer config fields."""
    from .codecs import HashTextEncoder, MiniLMTextEncoder

    vc = video_codec if video_codec is not None else PatchVideoCodec(*video_patch)
    ac = PatchAudioCodec(audio_patch, sample_rate, channels, audio_scale)
    if text_encoder == "minilm":
        te = MiniLMTextEncoder()
    elif text_encoder in ("hash", "hash_wide"):
        te = HashTextEncoder(**({"dim": 64} if text_encoder == "hash" else {}))
    else:
        raise ValueError(f"text_encoder: must be minilm or hash, got {text_encoder!r}")
    if isinstance(model, str):
        if model not in CONFIGS:
            raise ValueError(f"model: unknown config {model!r}; known: {', '.join(CONFIGS)}")
        base = CONFIGS[model].to_dict()
    else:
        base = model.to_dict()
    base.update(video_in=vc.latent_dim, audio_in=ac.latent_dim, text_in=te.dim, **overrides)
    transformer = SingleStreamTransformer(TransformerConfig.from_dict(base))
    return Components(transformer, vc, ac, te, sampling or SamplingConfig(), default_settings(defaults))
