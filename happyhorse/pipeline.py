"""`HappyHorsePipeline`: prompt (+ image, + audio) -> video with sound, diffusers-style.

The mode follows from the inputs: T2V (prompt), TI2V (+ first frame), TA2V (+ soundtrack),
TIA2V (all three). A given image becomes the clean latent of frame 0, a given sound the clean audio
latents; both stay clean through sampling ("unified conditioning", DESIGN.md section 3).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .codecs import Codec, PatchAudioCodec, PatchVideoCodec, TextEncoder
from .diffusion import SAMPLERS, get_schedule, predicted_x0, restart_schedule, sample
from .media import atomic_directory, read_audio, read_image, resample
from .model import SingleStreamTransformer, TransformerConfig
from .model.refiner import VideoRefiner

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default_model"
MAX_PROMPT_CHARS = 2000
MAX_SECONDS = 20.0
GUIDANCE_DROPS = ("image", "audio")  # the given conditions guidance can push toward (SchedulerConfig)
DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    """The name `resolve_dtype` takes for a dtype ("bfloat16"), as sidecars and reports record it."""
    return str(dtype).removeprefix("torch.")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """A device by name; "auto" (or None) is the GPU where there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (device == "cpu" or re.fullmatch(r"cuda(:\d+)?", str(device))):
        raise ValueError(f"device: must be one of {', '.join(DEVICES)}, got {device!r}")
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but this machine has no CUDA GPU (use cpu or auto)")
    return torch.device(device)


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch emulates it,
    slower than float32."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The dtype the transformers compute in. None: bfloat16 on a GPU, float32 on the CPU. "auto": the
    fastest measured not to change the evaluation (MODEL_CARD.md, Speed): bfloat16 on a GPU and on a
    CPU that multiplies it natively, else float32. float16 is for GPUs only: CPUs have no fast kernels."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" or cpu_has_fast_bfloat16() else torch.float32
    if isinstance(dtype, torch.dtype):
        chosen = dtype
    elif dtype in DTYPES:
        chosen = DTYPES[dtype]
    else:
        raise ValueError(f"dtype: must be one of auto, {', '.join(DTYPES)}, got {dtype!r}")
    if chosen not in DTYPES.values():
        raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {chosen}")
    if chosen == torch.float16 and device.type == "cpu":
        raise ValueError("dtype: float16 is for GPUs; on the CPU use float32 or bfloat16")
    return chosen


@dataclass
class SchedulerConfig:
    """Sampling defaults stored with a model: chosen by measurement for that model."""

    sampler: str = "euler"
    num_inference_steps: int = 16
    shift: float = 1.0
    guidance_scale: float = 1.0  # video; 1 = no classifier-free guidance (one forward per step)
    audio_guidance_scale: float = 1.0
    # noise levels [low, high] at which guidance applies (Kynkaenniemi et al. 2024, "Applying guidance
    # in a limited interval"); outside it one conditional forward per step, as with guidance 1
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    # autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself"): the
    # conditional prediction is pushed away from a weaker model's (`guide_transformer`); 1 = off;
    # video and sound apart, as with classifier-free guidance
    autoguidance_scale: float = 1.0
    audio_autoguidance_scale: float = 1.0
    # noise levels [low, high] at which the guide runs (inside the guidance interval too); outside it
    # no guide forward: where a scene's layout is settled its push is small, and it costs a third of a step
    autoguidance_interval: tuple[float, float] = (0.0, 1.0)
    # blocks the guide passes over; with no guide_transformer the guide is the model itself minus these
    # blocks (skip-layer guidance, as STG for video models: a weaker self, no second set of weights)
    guide_skip_blocks: tuple[int, ...] = ()
    # blocks in which the guide's video tokens attend to no other latent frame: a weaker self without
    # direct temporal attention (as STG perturbs a video model's temporal layers), so that autoguidance
    # pushes toward what ties the frames together; with a guide_transformer, that guide loses it. Audio
    # and text tokens still read every frame, so over several such blocks frames still meet through them
    guide_frame_local_blocks: tuple[int, ...] = ()
    # given conditions the unconditional branch goes without as well as the prompt: "image" (the first
    # frame), "audio" (the soundtrack), there noised to the step's level like generated tokens; then
    # guidance pushes toward prompt and given media together, not toward the prompt alone
    guidance_drops: tuple[str, ...] = ()
    # share of the video noise's variance that every latent frame shares (0 = independent noise, as in
    # training): a static component over time, the mixed noise prior of PYoCo (Ge et al. 2023), here
    # untrained, as a sampling-time nudge toward temporally consistent objects
    noise_correlation: float = 0.0
    # contrastive guidance: x0 += (d - 1)(c - n), n the model's prediction for the prompt with each pair
    # of `contrast_swaps` words exchanged ("to the left" <-> "to the right"), or for a given contrast
    # prompt: a push along what tells the two apart, for facts the text states barely separate
    contrast_guidance_scale: float = 1.0
    contrast_swaps: tuple[tuple[str, str], ...] = ()
    # restart sampling (Xu et al. 2023, "Restart sampling for improving generative processes"): on
    # reaching the low end of `restart_interval`, re-noise to its high end and walk that band again,
    # `restarts` times; each restart costs the band's steps again
    restarts: int = 0
    restart_interval: tuple[float, float] = (0.5, 0.8)
    # clamp the guided video x0 to the codec's pixel range at every step (static thresholding, Saharia
    # et al. 2022): guidance extrapolates past any pixel value, and the solver would carry that excess
    # into the next state; only for a codec whose latents are bounded (the exact patch codec's [-1, 1])
    clamp_x0: bool = False

    def __post_init__(self):
        for name in ("guidance_interval", "autoguidance_interval"):
            try:
                low, high = (float(v) for v in getattr(self, name))
            except (TypeError, ValueError):
                raise ValueError(f"{name}: two numbers [low, high], got {getattr(self, name)!r}") from None
            if not 0.0 <= low <= high <= 1.0:
                raise ValueError(f"{name}: need 0 <= low <= high <= 1, got {[low, high]}")
            setattr(self, name, (low, high))
        for name in ("guide_skip_blocks", "guide_frame_local_blocks"):  # their range is checked at call time
            blocks = getattr(self, name)
            if not isinstance(blocks, tuple | list) or not all(isinstance(i, int) and i >= 0 for i in blocks):
                raise ValueError(f"{name}: a list of block numbers, got {blocks!r}")
            setattr(self, name, tuple(blocks))
        drops = self.guidance_drops
        known = isinstance(drops, tuple | list) and set(drops) <= set(GUIDANCE_DROPS)
        if not known or len(set(drops)) != len(drops):
            raise ValueError(f"guidance_drops: distinct names from {list(GUIDANCE_DROPS)}, got {drops!r}")
        self.guidance_drops = tuple(drops)
        rho = self.noise_correlation
        if not (isinstance(rho, int | float) and math.isfinite(rho) and 0.0 <= rho < 1.0):
            raise ValueError(f"noise_correlation: must be a number in [0, 1), got {rho!r}")
        self.noise_correlation = float(rho)
        d = self.contrast_guidance_scale
        if not (isinstance(d, int | float) and math.isfinite(d) and 0.0 <= d <= 30.0):
            raise ValueError(f"contrast_guidance_scale: must be a number in [0, 30], got {d!r}")
        self.contrast_guidance_scale = float(d)
        swaps = self.contrast_swaps
        pairs = isinstance(swaps, tuple | list) and all(
            isinstance(p, tuple | list) and len(p) == 2 and all(isinstance(w, str) and w.strip() for w in p)
            for p in swaps
        )
        if not pairs:
            raise ValueError(f"contrast_swaps: a list of [word, word] pairs, got {swaps!r}")
        self.contrast_swaps = tuple((str(a).strip(), str(b).strip()) for a, b in swaps)
        if not (type(self.restarts) is int and 0 <= self.restarts <= 8):
            raise ValueError(f"restarts: a whole number in [0, 8], got {self.restarts!r}")
        try:
            low, high = (float(v) for v in self.restart_interval)
        except (TypeError, ValueError):
            raise ValueError(f"restart_interval: two numbers [low, high], got {self.restart_interval!r}") from None
        if not 0.0 < low < high < 1.0:
            raise ValueError(f"restart_interval: need 0 < low < high < 1, got {[low, high]}")
        self.restart_interval = (low, high)
        if not isinstance(self.clamp_x0, bool):
            raise ValueError(f"clamp_x0: true or false, got {self.clamp_x0!r}")

    def schedule(self) -> list[float]:
        """The noise levels the sampler walks: `num_inference_steps` at `shift`, with the restarts (a
        ValueError naming "restart" where the schedule has no such band)."""
        sigmas = get_schedule(self.num_inference_steps, self.shift)
        return restart_schedule(sigmas, *self.restart_interval, self.restarts) if self.restarts else sigmas

    @classmethod
    def from_dict(cls, d: dict) -> SchedulerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class HappyHorseOutput:
    frames: np.ndarray  # uint8 [B, T, H, W, 3]
    audio: np.ndarray  # float32 [B, C, N]
    fps: float
    sample_rate: int
    mode: str
    settings: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


LEFT_RIGHT = (("left", "right"),)  # the swap that turns a prompt's direction around


def swap_words(prompt: str, swaps: tuple[tuple[str, str], ...]) -> str:
    """The prompt with each pair's whole words exchanged, both ways at once, case kept by position:
    swap_words("thrown to the left", (("left", "right"),)) == "thrown to the right"."""
    if not swaps:
        return prompt
    table = {}
    for a, b in swaps:
        table[a.lower()], table[b.lower()] = b, a
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(table, key=len, reverse=True)) + r")\b", re.I)

    def swapped(m: re.Match) -> str:
        word = table[m.group(0).lower()]
        return word.capitalize() if m.group(0)[0].isupper() else word

    return pattern.sub(swapped, prompt)


def share_over_time(noise: torch.Tensor, grid: tuple[int, int, int], rho: float, generator) -> torch.Tensor:
    """Video noise [B, t*h*w, C] -> the same marginals (unit variance), with a share `rho` of each
    element's variance common to all t latent frames at its (h, w, channel): correlation rho between
    any two frames' noise at one place; drawn on the noise's device."""
    b, n, c = noise.shape
    t, h, w = grid
    shared = torch.randn(b, 1, h * w, c, generator=generator, device=noise.device)
    own = noise.reshape(b, t, h * w, c)
    return (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own).reshape(b, n, c)


def initial_noise(
    batch: int, grid: tuple[int, int, int], video_dim: int, num_audio: int, audio_dim: int, rho: float, generator
) -> list[torch.Tensor]:
    """The sampler's starting noise [video, audio] from a seeded generator: video, then audio, then (rho
    > 0) the part shared over time, drawn after the rest so that rho = 0 keeps every seed's clip."""
    noise = [
        torch.randn(batch, grid[0] * grid[1] * grid[2], video_dim, generator=generator),
        torch.randn(batch, num_audio, audio_dim, generator=generator),
    ]
    if rho > 0:
        noise[0] = share_over_time(noise[0], grid, rho, generator)
    return noise


def video_positions(grid: tuple[int, int, int], patch_t: int) -> torch.Tensor:
    """(t, h, w) of each video latent token [t*h*w, 3]; t in units of pt frames, frame 0 at 0."""
    t, h, w = grid
    centres = torch.tensor([0.0] + [((k - 1) * patch_t + 1 + (patch_t - 1) / 2) / patch_t for k in range(1, t)])
    tt, hh, ww = torch.meshgrid(
        centres, torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)


def audio_positions(num_tokens: int, seconds_per_token: float, fps: float, patch_t: int, grid_hw) -> torch.Tensor:
    """Audio tokens sit on the video's time axis at their centre time, in the middle of the frame."""
    centre = (torch.arange(num_tokens, dtype=torch.float32) + 0.5) * seconds_per_token * fps / patch_t
    h, w = grid_hw
    return torch.stack([centre, torch.full_like(centre, (h - 1) / 2), torch.full_like(centre, (w - 1) / 2)], -1)


def sequence_positions(grid, num_audio, num_text, video_codec, audio_codec, fps) -> torch.Tensor:
    """Positions of the packed [video | audio | text] sequence; text rows are zero (not rotated)."""
    return torch.cat(
        [
            video_positions(grid, video_codec.patch_t),
            audio_positions(num_audio, audio_codec.seconds_per_token, fps, video_codec.patch_t, grid[1:]),
            torch.zeros(num_text, 3),
        ]
    )


class HappyHorsePipeline:
    def __init__(
        self,
        transformer: SingleStreamTransformer,
        video_codec: Codec,  # PatchVideoCodec or AutoencoderVideoCodec
        audio_codec: PatchAudioCodec,
        text_encoder: TextEncoder,
        scheduler: SchedulerConfig | None = None,
        defaults: dict | None = None,
        guide_transformer: SingleStreamTransformer | None = None,
        refiner: VideoRefiner | None = None,
    ):
        self.transformer = transformer.eval()
        self.video_codec, self.audio_codec, self.text_encoder = video_codec, audio_codec, text_encoder
        self.scheduler = scheduler or SchedulerConfig()
        self.defaults = {"width": 64, "height": 64, "fps": 12.0, "seconds": 2.0, **(defaults or {})}
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.name = "happyhorse"
        self.guide_transformer = None
        if guide_transformer is not None:
            self.set_guide(guide_transformer)
        self.refiner = refiner.eval() if refiner is not None else None  # redraws decoded frames (model/refiner.py)

    def set_guide(self, guide: SingleStreamTransformer | None) -> None:
        """The weaker model autoguidance steers away from (less trained or smaller: its errors are the
        model's, made more often). It must read and write the same latents; None removes it."""
        if guide is not None:
            ours, theirs = self.transformer.cfg, guide.cfg
            keys = ("video_in", "audio_in", "text_in", "prediction")
            if any(getattr(ours, k) != getattr(theirs, k) for k in keys):
                raise ValueError(
                    "guide_transformer: must match the transformer's "
                    + ", ".join(f"{k} ({getattr(ours, k)}, got {getattr(theirs, k)})" for k in keys)
                )
            guide = guide.eval().to(self.device, self.dtype)
        self.guide_transformer = guide

    def _guide(self) -> SingleStreamTransformer:
        """The model autoguidance compares with: the guide model, else the model itself (with skipped blocks)."""
        return self.guide_transformer if self.guide_transformer is not None else self.transformer

    # ------------------------------------------------------------------------------ save / load

    def save_pretrained(self, directory: str | os.PathLike, weights_dtype: torch.dtype = torch.float32) -> Path:
        """Write the model directory (DESIGN.md section 4) next to the target, then swap it in.

        `weights_dtype=torch.float16` halves the file (the embedded default model ships so); loading
        always computes in the pipeline's dtype (fp32 on the CPU)."""
        if weights_dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"weights_dtype: must be float32, float16 or bfloat16, got {weights_dtype}")
        directory = Path(directory)
        with atomic_directory(directory) as staging:
            _save_transformer(self.transformer, staging / "transformer", weights_dtype)
            if self.guide_transformer is not None:
                _save_transformer(self.guide_transformer, staging / "guide_transformer", weights_dtype)
            if self.refiner is not None:
                self.refiner.save_pretrained(staging / "refiner", weights_dtype)
            self.video_codec.save_pretrained(staging / "video_codec")
            self.audio_codec.save_pretrained(staging / "audio_codec")
            self.text_encoder.save_pretrained(staging / "text_encoder")
            (staging / "scheduler").mkdir()
            (staging / "scheduler" / "config.json").write_text(json.dumps(asdict(self.scheduler), indent=1))
            index = {
                "_class_name": "HappyHorsePipeline",
                "transformer": "SingleStreamTransformer",
                "video_codec": self.video_codec.type,
                "audio_codec": self.audio_codec.type,
                "text_encoder": self.text_encoder.type,
                "scheduler": "SchedulerConfig",
                "defaults": self.defaults,
            }
            if self.guide_transformer is not None:
                index["guide_transformer"] = "SingleStreamTransformer"
            if self.refiner is not None:
                index["refiner"] = "VideoRefiner"
            (staging / "model_index.json").write_text(json.dumps(index, indent=1))
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ):
        """Load a model directory; with no directory, the embedded default model. `device` and `dtype`
        as `to()` takes them; by default the CPU in float32, and "auto" for both is what the CLI runs:
        the GPU where there is one, in the fastest dtype that keeps the evaluation (`resolve_dtype`)."""
        directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
        index_path = directory / "model_index.json"
        if not index_path.is_file():
            if directory == DEFAULT_MODEL_DIR:
                raise FileNotFoundError(
                    f"no embedded default model at {directory}; pass a model directory (--model DIR), "
                    "e.g. the DIR/model written by `happyhorse train`"
                )
            raise FileNotFoundError(f"model: {directory} is not a model directory (no model_index.json)")
        index = json.loads(index_path.read_text())
        transformer = _load_transformer(directory / "transformer")
        guide = _load_transformer(directory / "guide_transformer") if "guide_transformer" in index else None
        scheduler = SchedulerConfig.from_dict(json.loads((directory / "scheduler" / "config.json").read_text()))
        pipe = cls(
            transformer,
            Codec.from_pretrained(directory / "video_codec"),
            Codec.from_pretrained(directory / "audio_codec"),
            Codec.from_pretrained(directory / "text_encoder"),
            scheduler,
            index.get("defaults"),
            guide,
            VideoRefiner.from_pretrained(directory / "refiner") if "refiner" in index else None,
        )
        pipe.name = directory.resolve().name if directory != DEFAULT_MODEL_DIR else "happyhorse-default"
        return pipe.to(device, dtype) if device or dtype else pipe

    def to(
        self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
    ) -> HappyHorsePipeline:
        """Where the transformers compute and in what dtype (`resolve_device`, `resolve_dtype`; None
        keeps the device, and is float32 on the CPU, bfloat16 on a GPU); the sampler's arithmetic
        stays float32 on the CPU whatever the dtype."""
        self.device = resolve_device(device if device is not None else self.device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.transformer.to(self.device, self.dtype)
        if self.guide_transformer is not None:
            self.guide_transformer.to(self.device, self.dtype)
        self.video_codec.to(self.device)  # a learned codec computes in float32 wherever it is
        if self.refiner is not None:
            self.refiner.to(self.device)  # so does the refiner
        return self

    # ------------------------------------------------------------------------------ inputs

    @staticmethod
    def _contrast_prompts(prompts: list[str], given, swaps) -> list[str] | None:
        """The contrast prompts of contrastive guidance: given (one per prompt), or each prompt with the
        `swaps` words exchanged; None where no prompt changes (nothing to contrast, no extra forward)."""
        if given is not None:
            given = [given] if isinstance(given, str) else given
            if not isinstance(given, list) or len(given) != len(prompts) or not all(isinstance(g, str) for g in given):
                raise ValueError(f"contrast_prompt: one string per prompt ({len(prompts)}), got {given!r}")
            for g in given:
                if len(g) > MAX_PROMPT_CHARS:
                    raise ValueError(f"contrast_prompt: at most {MAX_PROMPT_CHARS} characters, got {len(g)}")
            return given
        if not swaps:
            raise ValueError(
                "contrast_guidance_scale: needs a contrast_prompt or contrast_swaps (word pairs to exchange); "
                "this model stores none"
            )
        swapped = [swap_words(p, swaps) for p in prompts]
        return None if swapped == prompts else swapped

    def check_inputs(
        self,
        prompt,
        image,
        audio,
        seconds,
        height,
        width,
        steps,
        guidance,
        audio_guidance,
        sampler,
        auto=(1.0, 1.0),
        skip=(),
        local=(),
    ):
        """Fail early, naming the argument, the value and what is allowed."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt: must be a string or a non-empty list of strings, got {type(prompt).__name__}")
        for p in prompts:
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt: at most {MAX_PROMPT_CHARS} characters, got {len(p)}")
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS):
            raise ValueError(f"seconds: must be in (0, {MAX_SECONDS}], got {seconds}")
        ph, pw = self.video_codec.patch_h, self.video_codec.patch_w
        for name, value, patch in (("height", height, ph), ("width", width, pw)):
            if not isinstance(value, int) or value < patch or value > 2048 or value % patch:
                raise ValueError(f"{name}: must be a multiple of {patch} in [{patch}, 2048] pixels, got {value}")
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise ValueError(f"num_inference_steps: must be an integer in 1..1000, got {steps}")
        for name, value in (("guidance_scale", guidance), ("audio_guidance_scale", audio_guidance)):
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 30):
                raise ValueError(f"{name}: must be a number in [0, 30], got {value}")
        depth = len(self._guide().blocks)
        for name, blocks in (("guide_skip_blocks", skip), ("guide_frame_local_blocks", local)):
            if not isinstance(blocks, tuple | list):
                raise ValueError(f"{name}: must be a tuple of block numbers, got {blocks!r}")
            if not all(isinstance(i, int) and 0 <= i < depth for i in blocks) or len(set(blocks)) != len(blocks):
                raise ValueError(f"{name}: distinct block numbers in 0..{depth - 1}, got {list(blocks)}")
        if set(skip) & set(local):
            raise ValueError(
                f"guide_frame_local_blocks: {sorted(set(skip) & set(local))} also in guide_skip_blocks (a skipped "
                "block has no attention to make frame-local); name each block in one of the two"
            )
        for name, value in zip(("autoguidance_scale", "audio_autoguidance_scale"), auto, strict=True):
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 30):
                raise ValueError(f"{name}: must be a number in [0, 30], got {value}")
            if value != 1.0 and self.guide_transformer is None and not skip and not local:
                raise ValueError(
                    f"{name}: {value} needs a guide: a guide_transformer/ in the model directory (this one has "
                    "none), guide_skip_blocks or guide_frame_local_blocks; use 1 (off)"
                )
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if image is not None and not isinstance(image, str | os.PathLike | np.ndarray):
            raise ValueError(f"image: must be a path or a uint8 [H, W, 3] array, got {type(image).__name__}")
        if audio is not None and not isinstance(audio, str | os.PathLike | tuple):
            raise ValueError(
                f"audio: must be a path or an (array [C, N], sample_rate) tuple, got {type(audio).__name__}"
            )
        return prompts

    def _prepare_image(self, image, height: int, width: int) -> torch.Tensor:
        """Path or array -> uint8 [H, W, 3] at the output size: scaled to cover, then centre-cropped."""
        from PIL import Image

        array = read_image(image) if not isinstance(image, np.ndarray) else image
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 2:
            raise ValueError(f"image: must be uint8 [H, W, 3] with H, W >= 2, got {array.dtype} {list(array.shape)}")
        h, w = array.shape[:2]
        scale = max(height / h, width / w)
        resized = Image.fromarray(array).resize(
            (max(width, round(w * scale)), max(height, round(h * scale))), Image.LANCZOS
        )
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return torch.from_numpy(np.asarray(resized.crop((left, top, left + width, top + height))).copy())

    def _prepare_audio(self, audio) -> np.ndarray:
        """Path or (array, rate) -> float32 [C, N] at the codec's rate and channel count."""
        sr, channels = self.audio_codec.sample_rate, self.audio_codec.channels
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise ValueError("audio: a tuple must be (array [C, N] or [N], sample_rate)")
            array, rate = np.asarray(audio[0], dtype=np.float32), int(audio[1])
            if array.ndim == 1:
                array = array[None]
            if array.ndim != 2 or array.shape[0] not in (1, 2) or array.shape[1] < 1 or not np.isfinite(array).all():
                raise ValueError(f"audio: array must be finite [C, N] with C in 1..2, got {list(array.shape)}")
            if rate < 8000:
                raise ValueError(f"audio: sample rate must be >= 8000 Hz, got {rate}")
            array = resample(np.clip(array, -1, 1), rate, sr)
        else:
            array, _ = read_audio(audio, sample_rate=sr, max_seconds=MAX_SECONDS)
        if array.shape[0] != channels:
            array = array.mean(0, keepdims=True) if channels == 1 else np.repeat(array[:1], 2, axis=0)
        return array

    # ------------------------------------------------------------------------------ generation

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: Any = None,
        audio: Any = None,
        seconds: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        seed: int = 0,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        sampler: str | None = None,
        shift: float | None = None,
        guidance_interval: tuple[float, float] | None = None,
        autoguidance_scale: float | None = None,
        audio_autoguidance_scale: float | None = None,
        autoguidance_interval: tuple[float, float] | None = None,
        guide_skip_blocks: tuple[int, ...] | None = None,
        guide_frame_local_blocks: tuple[int, ...] | None = None,
        guidance_drops: tuple[str, ...] | None = None,
        noise_correlation: float | None = None,
        contrast_prompt: str | list[str] | None = None,
        contrast_guidance_scale: float | None = None,
        contrast_swaps: tuple[tuple[str, str], ...] | None = None,
        refine: bool | None = None,
        self_condition: bool | None = None,
        restarts: int | None = None,
        restart_interval: tuple[float, float] | None = None,
        clamp_x0: bool | None = None,
        progress: bool = False,
        callback=None,
    ) -> HappyHorseOutput:
        timings = {}
        start = time.perf_counter()
        sch = self.scheduler
        steps = num_inference_steps if num_inference_steps is not None else sch.num_inference_steps
        guidance = guidance_scale if guidance_scale is not None else sch.guidance_scale
        audio_guidance = audio_guidance_scale if audio_guidance_scale is not None else sch.audio_guidance_scale
        sampler = sampler or sch.sampler
        auto = (
            autoguidance_scale if autoguidance_scale is not None else sch.autoguidance_scale,
            audio_autoguidance_scale if audio_autoguidance_scale is not None else sch.audio_autoguidance_scale,
        )
        skip = guide_skip_blocks if guide_skip_blocks is not None else sch.guide_skip_blocks
        local = guide_frame_local_blocks if guide_frame_local_blocks is not None else sch.guide_frame_local_blocks

        def setting(name: str, value):
            """The call's value, checked as a stored default would be, else the model's stored one."""
            return getattr(sch, name) if value is None else getattr(SchedulerConfig(**{name: value}), name)

        drops = setting("guidance_drops", guidance_drops)
        rho = setting("noise_correlation", noise_correlation)
        contrast_scale = sch.contrast_guidance_scale if contrast_guidance_scale is None else contrast_guidance_scale
        swaps = setting("contrast_swaps", contrast_swaps)
        SchedulerConfig(contrast_guidance_scale=contrast_scale)  # checked as a stored default would be
        shift = shift if shift is not None else sch.shift
        interval = setting("guidance_interval", guidance_interval)
        auto_interval = setting("autoguidance_interval", autoguidance_interval)
        clamp = setting("clamp_x0", clamp_x0)
        bounds = self.video_codec.latent_range if clamp else None
        if clamp and bounds is None:
            raise ValueError(
                f"clamp_x0: the video codec ({self.video_codec.type}) has unbounded latents; "
                "only a codec with a pixel range (video_patch) can be clamped"
            )
        run = SchedulerConfig(
            num_inference_steps=steps,
            shift=shift,
            restarts=sch.restarts if restarts is None else restarts,
            restart_interval=sch.restart_interval if restart_interval is None else restart_interval,
        )  # checked as stored defaults would be
        restart_asked = restarts is not None or restart_interval is not None
        if refine and self.refiner is None:
            raise ValueError("refine: this model has no refiner/ component; leave refine unset or pass False")
        refine = self.refiner is not None if refine is None else bool(refine)
        has_input = self.transformer.cfg.self_conditioning
        if self_condition and not has_input:
            raise ValueError(
                "self_condition: this model has no self-conditioning input; leave self_condition unset or pass False"
            )
        self_condition = has_input if self_condition is None else bool(self_condition)
        height = self.defaults["height"] if height is None else height
        width = self.defaults["width"] if width is None else width
        fps = float(fps or self.defaults["fps"])
        if audio is not None and not isinstance(audio, str | os.PathLike | tuple):
            raise ValueError(
                f"audio: must be a path or an (array [C, N], sample_rate) tuple, got {type(audio).__name__}"
            )
        given_audio = self._prepare_audio(audio) if audio is not None else None
        if seconds is None:
            seconds = (
                given_audio.shape[1] / self.audio_codec.sample_rate
                if given_audio is not None
                else self.defaults["seconds"]
            )
            seconds = min(seconds, MAX_SECONDS)
        # 1. check inputs
        prompts = self.check_inputs(
            prompt, image, audio, seconds, height, width, steps, guidance, audio_guidance, sampler, auto, skip, local
        )
        skip, local = tuple(skip), tuple(local)
        try:
            sigmas = run.schedule()
        except ValueError:
            if restart_asked:
                low, high = run.restart_interval
                raise ValueError(
                    f"restarts: the schedule of {steps} steps at shift {shift} has no levels between {low} "
                    f"and {high} above 0 ({[round(v, 3) for v in get_schedule(steps, shift)]}); widen "
                    "restart_interval or pass restarts=0"
                ) from None
            # the model's stored restart fits its own step count, not this one: sample without it
            run = replace(run, restarts=0)
            sigmas = run.schedule()
        batch = len(prompts)
        vc, ac = self.video_codec, self.audio_codec
        num_frames = vc.num_frames(max(1, round(seconds * fps)))
        num_samples = round(num_frames / fps * ac.sample_rate)
        grid = vc.latent_shape(num_frames, height, width)
        num_video, num_audio = grid[0] * grid[1] * grid[2], ac.num_tokens(num_samples)
        mode = "T" + ("I" if image is not None else "") + ("A" if audio is not None else "") + "2V"
        contrasts = self._contrast_prompts(prompts, contrast_prompt, swaps) if contrast_scale != 1.0 else None
        # 2. encode the conditions
        use_cfg = guidance != 1.0 or audio_guidance != 1.0
        # with guidance, the empty prompt is the unconditional branch; one call pads all prompts alike
        main = prompts + [""] * batch if use_cfg else prompts
        text, text_mask = self.text_encoder.encode(main + (contrasts or []))
        contrast = None
        if contrasts is not None:
            contrast = (text[len(main) :], text_mask[len(main) :], contrast_scale)
            text, text_mask = text[: len(main)], text_mask[: len(main)]
        clean = [None, None]
        if image is not None:
            first = self._prepare_image(image, height, width)
            frames0 = first[None, None].expand(batch, num_frames, -1, -1, -1)
            z = vc.encode(frames0).reshape(batch, num_video, -1)
            mask = torch.zeros(batch, num_video, dtype=torch.bool)
            mask[:, : grid[1] * grid[2]] = True  # latent frame 0
            clean[0] = (mask, z)
        if given_audio is not None:
            wave = torch.zeros(batch, ac.channels, num_samples)
            n = min(num_samples, given_audio.shape[1])
            wave[:, :, :n] = torch.from_numpy(given_audio[:, :n])
            mask = torch.zeros(batch, num_audio, dtype=torch.bool)
            mask[:, : n // ac.patch] = True  # only whole patches of given sound are kept clean
            clean[1] = (mask, ac.encode(wave))
        positions = sequence_positions(grid, num_audio, text.shape[1], vc, ac, fps).to(self.device)
        timings["encode_s"] = time.perf_counter() - start
        # 3. noise, from a seeded CPU generator so a seed gives the same clip on every device
        gen = torch.Generator().manual_seed(int(seed))
        noise = initial_noise(batch, grid, vc.latent_dim, num_audio, ac.latent_dim, rho, gen)
        # given conditions the unconditional branch goes without: (mask, clean latents, this sample's noise)
        dropped = [
            (c[0], c[1], n) if c is not None and name in drops else None
            for c, n, name in zip(clean, noise, GUIDANCE_DROPS, strict=True)
        ]
        denoise = self._denoiser(
            text,
            text_mask,
            positions,
            clean,
            use_cfg,
            guidance,
            audio_guidance,
            interval,
            auto,
            skip,
            dropped,
            contrast,
            local,
            self_condition,
            auto_interval,
            bounds,
        )
        # 4. sample
        t0 = time.perf_counter()
        bar = _progress_bar(len(sigmas) - 1) if progress else None
        try:

            def on_step(i, n):
                if bar is not None:
                    bar[0].update(bar[1], completed=i)
                if callback is not None:
                    callback(i, n)

            def fresh_noise(xs):  # what the stochastic samplers draw: noise like the starting noise
                return initial_noise(batch, grid, vc.latent_dim, num_audio, ac.latent_dim, rho, gen)

            video_lat, audio_lat = sample(denoise, noise, sigmas, sampler, clean, gen, on_step, fresh_noise)
        finally:
            if bar is not None:
                bar[0].stop()
        timings["denoise_s"] = time.perf_counter() - t0
        # 5. decode
        t0 = time.perf_counter()
        frames = vc.decode(video_lat.reshape(batch, *grid, -1))
        if refine:  # 5b. the second stage redraws the decoded frames
            t1 = time.perf_counter()
            frames = self.refiner.refine(frames)
            timings["refine_s"] = time.perf_counter() - t1
        frames = frames.numpy()
        if image is not None:  # the given first frame is the output's first frame, exactly
            frames[:, 0] = first.numpy()
        sound = ac.decode(audio_lat, num_samples).numpy().astype(np.float32)
        if given_audio is not None:
            n = min(num_samples, given_audio.shape[1])
            sound[:, :, :n] = given_audio[None, :, :n]
        timings["decode_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - start
        settings = {
            "seconds": num_frames / fps,
            "num_frames": num_frames,
            "height": height,
            "width": width,
            "fps": fps,
            "sample_rate": ac.sample_rate,
            "num_inference_steps": steps,
            "guidance_scale": guidance,
            "audio_guidance_scale": audio_guidance,
            "sampler": sampler,
            "shift": shift,
            "guidance_interval": list(interval),
            "autoguidance_scale": auto[0],
            "audio_autoguidance_scale": auto[1],
            "autoguidance_interval": list(auto_interval),
            "guide_skip_blocks": list(skip),
            "guide_frame_local_blocks": list(local),
            "guidance_drops": list(drops),
            "noise_correlation": rho,
            "contrast_guidance_scale": contrast_scale,
            "contrast_prompt": contrasts,
            "refine": bool(refine),
            "self_condition": self_condition,
            "restarts": run.restarts,
            "restart_interval": list(run.restart_interval),
            "clamp_x0": clamp,
            "seed": int(seed),
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
        }
        return HappyHorseOutput(frames, sound, fps, ac.sample_rate, mode, settings, timings)

    def _denoiser(
        self,
        text,
        text_mask,
        positions,
        clean,
        use_cfg,
        guidance,
        audio_guidance,
        interval=(0.0, 1.0),
        auto=(1.0, 1.0),
        skip=(),
        dropped=(None, None),
        contrast=None,
        local=(),
        self_condition=True,
        auto_interval=(0.0, 1.0),
        bounds=None,
    ):
        """The x0 predictor the samplers call: model + per-modality classifier-free guidance, plus
        autoguidance by the guide model, at noise levels inside `interval` only (and, for the guide,
        inside `auto_interval` too).

        x0 = c + (w - 1)(c - u) + (a - 1)(c - g) per modality (`auto` = (video a, sound a)), with c, u
        the model's conditional and unconditional predictions and g the guide's conditional one (the
        guide model, or the model itself, passing over the `skip` blocks and with no attention between
        latent frames in the `local` blocks): CFG pushes away from no prompt, autoguidance from the
        errors a weaker model makes more of (Karras et al. 2024).
        `dropped` (per modality: mask, clean latents, noise, or None) are given tokens the unconditional
        branch sees as generated ones, noised to the step's level by the sample's own noise. `contrast`
        (text states, mask, scale d) adds (d - 1)(c - n) to the video, n the prediction for the contrast
        prompts (contrastive guidance). With `self_condition`, a self-conditioning model reads, in each
        branch (main, guide, contrast), the x0 it predicted there one step before. With `bounds` (low,
        high), the guided video x0 is clamped to them (static thresholding)."""
        device, dtype = self.device, self.dtype
        prediction = self.transformer.cfg.prediction
        text, text_mask = text.to(device, dtype), text_mask.to(device)
        video_clean = clean[0][0] if clean[0] is not None else None
        audio_clean = clean[1][0] if clean[1] is not None else None

        estimates = {}  # a self-conditioning model's last x0 per branch, given to its next call there

        def predict(
            model, video, audio, sigma: float, reps: int, txt, txt_mask, skip_blocks=(), local_blocks=(), branch=""
        ):
            b = video.shape[0]
            vclean = video_clean if video_clean is not None else torch.zeros(video.shape[:2], dtype=torch.bool)
            aclean = audio_clean if audio_clean is not None else torch.zeros(audio.shape[:2], dtype=torch.bool)
            masks = [vclean.repeat(reps, 1), aclean.repeat(reps, 1)]
            xs = [video.repeat(reps, 1, 1), audio.repeat(reps, 1, 1)]
            if reps == 2:  # the unconditional half goes without the dropped conditions too
                for k, drop in enumerate(dropped):
                    if drop is not None:
                        mask, z, eps = drop
                        xs[k] = xs[k].clone()
                        xs[k][b:] = torch.where(mask[..., None], (1 - sigma) * z + sigma * eps, xs[k][b:])
                        masks[k] = masks[k].clone()
                        masks[k][b:] = False
            sig_tokens = torch.cat([(~masks[0]).float(), (~masks[1]).float()], dim=1) * sigma  # clean tokens: 0
            estimate = None
            if self_condition and model.cfg.self_conditioning and branch in estimates:  # none at the first step
                estimate = [e if e.shape[0] == reps * b else e[:b].repeat(reps, 1, 1) for e in estimates[branch]]
                estimate = [e.to(device, dtype) for e in estimate]
            out = model(
                xs[0].to(device, dtype),
                xs[1].to(device, dtype),
                txt[: reps * b],  # the b prompts, then (with guidance) b empty ones
                txt_mask[: reps * b],
                positions,
                masks[0].to(device),
                masks[1].to(device),
                sig_tokens.to(device, dtype),
                skip_blocks=skip_blocks,
                frame_local_blocks=local_blocks,
                self_condition=estimate,
            )
            sig = torch.tensor(sigma)
            x0v = predicted_x0(out.video.float().cpu(), xs[0], sig, prediction)
            x0a = predicted_x0(out.audio.float().cpu(), xs[1], sig, prediction)
            if self_condition and model.cfg.self_conditioning:
                estimates[branch] = (x0v, x0a)
            return x0v, x0a

        def denoise(xs, sigma: float):
            video, audio = xs
            b = video.shape[0]
            inside = interval[0] <= sigma <= interval[1]
            guided = use_cfg and inside
            x0v, x0a = predict(
                self.transformer, video, audio, sigma, 2 if guided else 1, text, text_mask, branch="main"
            )
            cond_v, cond_a = x0v[:b], x0a[:b]
            if guided:
                x0v = x0v[b:] + guidance * (cond_v - x0v[b:])
                x0a = x0a[b:] + audio_guidance * (cond_a - x0a[b:])
            if auto != (1.0, 1.0) and inside and auto_interval[0] <= sigma <= auto_interval[1]:
                guide_v, guide_a = predict(
                    self._guide(), video, audio, sigma, 1, text, text_mask, skip, local, branch="guide"
                )
                x0v = x0v + (auto[0] - 1) * (cond_v - guide_v)
                x0a = x0a + (auto[1] - 1) * (cond_a - guide_a)
            if contrast is not None and inside:
                ctext, cmask, scale = contrast
                contrast_v, _ = predict(
                    self.transformer,
                    video,
                    audio,
                    sigma,
                    1,
                    ctext.to(device, dtype),
                    cmask.to(device),
                    branch="contrast",
                )
                x0v = x0v + (scale - 1) * (cond_v - contrast_v)
            if bounds is not None:
                x0v = x0v.clamp(*bounds)
            return [x0v, x0a]

        return denoise


def _save_transformer(model: SingleStreamTransformer, directory: Path, weights_dtype: torch.dtype) -> None:
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(model.cfg.to_dict(), indent=1))
    state = {k: v.detach().to(weights_dtype).contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def _load_transformer(directory: Path) -> SingleStreamTransformer:
    model = SingleStreamTransformer(TransformerConfig.from_dict(json.loads((directory / "config.json").read_text())))
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    bar.start()
    return bar, bar.add_task("denoise", total=total)


def build_pipeline(
    model: str | TransformerConfig = "tiny",
    text_encoder: str = "minilm",
    video_patch: tuple[int, int, int] = (4, 8, 8),
    audio_patch: int = 400,
    sample_rate: int = 16000,
    channels: int = 1,
    audio_scale: float = 3.0,
    defaults: dict | None = None,
    scheduler: SchedulerConfig | None = None,
    video_codec: Codec | None = None,
    text_layers: tuple[int, ...] | None = None,
    **overrides,
) -> HappyHorsePipeline:
    """A freshly initialised pipeline: codecs first, then a transformer whose input widths match them.
    `video_codec` (e.g. a trained AutoencoderVideoCodec) replaces the exact patch codec of `video_patch`;
    `text_layers` are the MiniLM layers the text states concatenate (None: the last)."""
    from .codecs import HashTextEncoder, MiniLMTextEncoder
    from .model import CONFIGS

    vc = video_codec if video_codec is not None else PatchVideoCodec(*video_patch)
    ac = PatchAudioCodec(audio_patch, sample_rate, channels, audio_scale)
    if text_layers is not None and text_encoder != "minilm":
        raise ValueError(f"text_layers: only the minilm text encoder has layers, not {text_encoder!r}")
    te = (
        MiniLMTextEncoder(**({} if text_layers is None else {"layers": tuple(text_layers)}))
        if text_encoder == "minilm"
        else HashTextEncoder(**({"dim": 64} if text_encoder == "hash" else {}))
    )
    if isinstance(model, str):
        if model not in CONFIGS:
            raise ValueError(f"model: unknown config {model!r}; known: {', '.join(CONFIGS)}")
        base = CONFIGS[model].to_dict()
    else:
        base = model.to_dict()
    base.update(video_in=vc.latent_dim, audio_in=ac.latent_dim, text_in=te.dim, **overrides)
    transformer = SingleStreamTransformer(TransformerConfig.from_dict(base))
    return HappyHorsePipeline(transformer, vc, ac, te, scheduler, defaults)


__all__ = ["HappyHorseOutput", "HappyHorsePipeline", "SchedulerConfig", "build_pipeline"]
