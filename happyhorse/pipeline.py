"""`HappyHorsePipeline`: prompt (+ image, + audio) -> video with sound, diffusers-style.

The mode follows from the inputs: T2V (prompt), TI2V (+ first frame), TA2V (+ soundtrack),
TIA2V (all three). A given image becomes the clean latent of frame 0, a given sound the clean audio
latents; both stay clean through sampling ("unified conditioning", DESIGN.md section 3). How the model
samples is its directory's `SamplingConfig` (diffusion/sampling.py); a call names the clip it wants.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .codecs import Codec, PatchAudioCodec, TextEncoder
from .components import DEFAULT_MODEL_DIR, Components, check_guide, default_settings
from .conditioning import (
    Condition,
    frame_time,
    prefix_latent_frames,
    reference_time,
    resolve_frame,
    still_positions,
    still_tokens,
)
from .devices import dtype_name, resolve_device, resolve_dtype
from .diffusion import sample
from .diffusion.noise import initial_noise
from .diffusion.sampling import SamplingConfig
from .media import read_audio, read_image, resample
from .model import SingleStreamTransformer
from .model.positions import sequence_positions
from .world.speech import spoken_line

MAX_PROMPT_CHARS = 2000
MAX_SECONDS = 20.0
MAX_SIDE = 2048
MAX_FPS = 120.0
OUTPUT_TYPES = ("np", "pt")


@dataclass
class HappyHorseOutput:
    frames: np.ndarray | torch.Tensor  # uint8 [B, T, H, W, 3]
    audio: np.ndarray | torch.Tensor  # float32 [B, C, N] in [-1, 1]
    fps: float
    sample_rate: int
    mode: str  # T2V, TI2V, TA2V or TIA2V
    settings: dict = field(default_factory=dict)  # every setting the clip was made with
    timings: dict = field(default_factory=dict)  # seconds per stage


class HappyHorsePipeline:
    def __init__(
        self,
        transformer: SingleStreamTransformer,
        video_codec: Codec,  # PatchVideoCodec or AutoencoderVideoCodec
        audio_codec: PatchAudioCodec,
        text_encoder: TextEncoder,
        sampling: SamplingConfig | None = None,
        defaults: dict | None = None,
        guide_transformer: SingleStreamTransformer | None = None,
    ):
        self.transformer = transformer.eval()
        self.video_codec, self.audio_codec, self.text_encoder = video_codec, audio_codec, text_encoder
        self.defaults = default_settings(defaults)
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.name = "happyhorse"
        self.guide_transformer = None
        if guide_transformer is not None:
            self.set_guide(guide_transformer)
        self.sampling = sampling or SamplingConfig()

    @property
    def sampling(self) -> SamplingConfig:
        """How this model samples (stored in its directory); assigning one checks it against the model."""
        return self._sampling

    @sampling.setter
    def sampling(self, value: SamplingConfig) -> None:
        if not isinstance(value, SamplingConfig):
            raise ValueError(f"sampling: must be a SamplingConfig, got {type(value).__name__}")
        check_guide(value, self.guide_transformer)
        self._sampling = value

    def set_guide(self, guide: SingleStreamTransformer | None) -> None:
        """The weaker model autoguidance steers away from (less trained or smaller: its errors are the
        model's, made more often). It must read and write the same latents; None removes it."""
        if guide is not None:
            ours, theirs = self.transformer.cfg, guide.cfg
            keys = ("video_in", "audio_in", "text_in")
            if any(getattr(ours, k) != getattr(theirs, k) for k in keys):
                raise ValueError(
                    "guide_transformer: must match the transformer's "
                    + ", ".join(f"{k} ({getattr(ours, k)}, got {getattr(theirs, k)})" for k in keys)
                )
            guide = guide.eval().to(self.device, self.dtype)
        elif getattr(self, "_sampling", None) is not None and self._sampling.autoguidance is not None:
            raise ValueError("guide_transformer: this model samples with autoguidance; it cannot go without a guide")
        self.guide_transformer = guide

    # ------------------------------------------------------------------------------ save / load

    @property
    def components(self) -> Components:
        return Components(
            self.transformer,
            self.video_codec,
            self.audio_codec,
            self.text_encoder,
            self.sampling,
            self.defaults,
            self.guide_transformer,
        )

    def save_pretrained(self, directory: str | os.PathLike, weights_dtype: torch.dtype = torch.float32):
        """Write the model directory (DESIGN.md section 4) atomically; see `Components.save_pretrained`."""
        return self.components.save_pretrained(directory, weights_dtype)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> HappyHorsePipeline:
        """Load a model directory; with no directory, the embedded default model. `device` and `dtype`
        as `to()` takes them; by default the CPU in float32, and "auto" for both is what the CLI runs:
        the GPU where there is one, in the fastest dtype that keeps the evaluation (`resolve_dtype`)."""
        c = Components.from_pretrained(directory)
        pipe = cls(
            c.transformer, c.video_codec, c.audio_codec, c.text_encoder, c.sampling, c.defaults, c.guide_transformer
        )
        default = directory is None or os.path.realpath(directory) == os.path.realpath(DEFAULT_MODEL_DIR)
        pipe.name = "happyhorse-default" if default else os.path.basename(os.path.realpath(directory))
        return pipe.to(device, dtype) if device or dtype else pipe

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None):
        """Where the transformers compute and in what dtype (`resolve_device`, `resolve_dtype`; None
        keeps the device, and is float32 on the CPU, bfloat16 on a GPU); the sampler's arithmetic
        stays float32 on the CPU whatever the dtype."""
        self.device = resolve_device(device if device is not None else self.device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.transformer.to(self.device, self.dtype)
        if self.guide_transformer is not None:
            self.guide_transformer.to(self.device, self.dtype)
        self.video_codec.to(self.device)  # a learned codec computes in float32 wherever it is
        return self

    # ------------------------------------------------------------------------------ inputs

    def check_inputs(
        self,
        prompt,
        image=None,
        audio=None,
        seconds=None,
        height=None,
        width=None,
        fps=None,
        seed=0,
        output_type="np",
        conditions=None,
    ) -> list[str]:
        """Fail early, naming the argument, the value and what is allowed; returns the prompts as a list.
        The sampling settings a call may override are checked by `SamplingConfig.with_overrides`."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompt: must be a string or a non-empty list of strings, got {type(prompt).__name__}")
        for p in prompts:
            if len(p) > MAX_PROMPT_CHARS:
                raise ValueError(f"prompt: at most {MAX_PROMPT_CHARS} characters, got {len(p)}")
            spoken_line(p)  # a quoted line in a language the world speaks, in its script, of a sayable length
        if seconds is not None and not (
            isinstance(seconds, int | float) and math.isfinite(seconds) and 0 < seconds <= MAX_SECONDS
        ):
            raise ValueError(f"seconds: must be in (0, {MAX_SECONDS:g}], got {seconds}")
        ph, pw = self.video_codec.patch_h, self.video_codec.patch_w
        for name, value, patch in (("height", height, ph), ("width", width, pw)):
            if value is not None and (not isinstance(value, int) or not patch <= value <= MAX_SIDE or value % patch):
                raise ValueError(f"{name}: must be a multiple of {patch} in [{patch}, {MAX_SIDE}] pixels, got {value}")
        if fps is not None and not (isinstance(fps, int | float) and math.isfinite(fps) and 1 <= fps <= MAX_FPS):
            raise ValueError(f"fps: must be a number in [1, {MAX_FPS:g}], got {fps}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
            raise ValueError(f"seed: must be an integer in [0, 2^63), got {seed!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type: must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if image is not None and not isinstance(image, str | os.PathLike | np.ndarray):
            raise ValueError(f"image: must be a path or a uint8 [H, W, 3] array, got {type(image).__name__}")
        if audio is not None and not isinstance(audio, str | os.PathLike | tuple):
            raise ValueError(
                f"audio: must be a path or an (array [C, N], sample_rate) tuple, got {type(audio).__name__}"
            )
        if conditions is not None:
            if not isinstance(conditions, list | tuple) or not all(isinstance(c, Condition) for c in conditions):
                raise ValueError("conditions: must be a list of happyhorse.Condition")
            starts = [c for c in conditions if c.video is not None or (c.frame_index == 0 and not c.reference)]
            if len(starts) + (image is not None) > 1:  # frame indices counted from the end: when resolved
                raise ValueError("conditions: the first frame is given twice (image, a frame_index 0 image or a video)")
        return prompts

    def prepare_image(self, image, height: int, width: int) -> torch.Tensor:
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

    def _prepare_conditions(self, conditions, num_frames: int, height: int, width: int):
        """(stills, prefix, first): stills as (time, uint8 image [H, W, 3], output frame or None for a
        reference), the frames [F, H, W, 3] the clip continues from and a first frame given as a
        condition (None if none), at the output size."""
        stills, prefix, first, references = [], None, None, 0
        for c in conditions:
            if c.video is not None:
                video = np.asarray(c.video)
                if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or len(video) < 1:
                    raise ValueError(
                        f"conditions: a video must be uint8 [F, H, W, 3], got {video.dtype} {list(video.shape)}"
                    )
                m = prefix_latent_frames(len(video), self.video_codec.patch_t)
                if m >= self.video_codec.latent_shape(num_frames, height, width)[0]:
                    raise ValueError(
                        f"conditions: {len(video)} given frames leave nothing to make in {num_frames} frames; "
                        "give fewer frames or more seconds"
                    )
                used = 1 + (m - 1) * self.video_codec.patch_t  # whole latent frames only
                prefix = torch.stack([self.prepare_image(f, height, width) for f in video[len(video) - used :]])
            elif c.reference:
                stills.append((reference_time(references), self.prepare_image(c.image, height, width), None))
                references += 1
            else:
                f = resolve_frame(int(c.frame_index), num_frames)
                if f == 0:  # the first frame: given in place, as `image` is
                    if first is not None:
                        raise ValueError("conditions: the first frame is given twice")
                    first = c.image
                    continue
                image = self.prepare_image(c.image, height, width)
                stills.append((frame_time(f, self.video_codec.patch_t), image, f))
        if first is not None and prefix is not None:
            raise ValueError("conditions: the first frame is given twice (an image and a video to continue)")
        return stills, prefix, first

    def prepare_audio(self, audio) -> np.ndarray:
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
        *,
        conditions: list[Condition] | None = None,
        seconds: float | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        seed: int = 0,
        output_type: str = "np",
        progress: bool = False,
        callback=None,
    ) -> HappyHorseOutput:
        """One clip per prompt, with sound. `image` (path or uint8 [H, W, 3]) is the first frame; `audio`
        (path or (array [C, N], sample_rate)) the soundtrack, whose length is the clip's unless `seconds`
        is given. `conditions` (happyhorse.Condition) give other frames, a clip to continue and subject
        references. None takes the model's default (`self.defaults`, `self.sampling`). `callback(step,
        steps)` after each sampler step; `progress` shows a bar."""
        start = time.perf_counter()
        # 1. check inputs; the sampling settings as the model stores them, with this call's overrides
        prompts = self.check_inputs(prompt, image, audio, seconds, height, width, fps, seed, output_type, conditions)
        sampling = self.sampling.with_overrides(num_inference_steps, guidance_scale, audio_guidance_scale)
        given_audio = self.prepare_audio(audio) if audio is not None else None
        if seconds is None:
            seconds = self.defaults["seconds"]
            if given_audio is not None:
                seconds = min(given_audio.shape[1] / self.audio_codec.sample_rate, MAX_SECONDS)
        height = self.defaults["height"] if height is None else height
        width = self.defaults["width"] if width is None else width
        fps = float(fps or self.defaults["fps"])
        batch = len(prompts)
        vc, ac = self.video_codec, self.audio_codec
        num_frames = vc.num_frames(max(1, round(seconds * fps)))
        num_samples = round(num_frames / fps * ac.sample_rate)
        grid = vc.latent_shape(num_frames, height, width)  # latent (t, h, w)
        num_video, num_audio = grid[0] * grid[1] * grid[2], ac.num_tokens(num_samples)
        stills, prefix, first_given = self._prepare_conditions(conditions or [], num_frames, height, width)
        if first_given is not None:
            if image is not None:
                raise ValueError("conditions: the first frame is given twice (image and a frame_index 0 image)")
            image = first_given
        mode = (
            "T"
            + "".join(
                letter
                for letter, given in (
                    ("V", prefix is not None),
                    ("I", image is not None),
                    ("K", any(f not in (None, 0) for _, _, f in stills)),
                    ("R", any(f is None for _, _, f in stills)),
                    ("A", audio is not None),
                )
                if given
            )
            + "2V"
        )
        # 2. encode the conditions; with guidance the empty prompt is the unconditional branch, and one
        # call pads all prompts alike
        cfg = sampling.classifier_free
        text, text_mask = self.text_encoder.encode(prompts + [""] * batch if cfg is not None else prompts)
        clean = [None, None]  # per modality: (mask [B, N] of given tokens, their clean latents)
        if image is not None:
            first = self.prepare_image(image, height, width)
            frames0 = first[None, None].expand(batch, num_frames, -1, -1, -1)
            z = vc.encode(frames0).reshape(batch, num_video, -1)
            mask = torch.zeros(batch, num_video, dtype=torch.bool)
            mask[:, : grid[1] * grid[2]] = True  # latent frame 0
            clean[0] = (mask, z)
        if prefix is not None:  # continue a clip: its whole latent frames are given in place
            frames = torch.zeros(num_frames, height, width, 3, dtype=torch.uint8)
            frames[: len(prefix)] = prefix
            z = vc.encode(frames[None].expand(batch, -1, -1, -1, -1)).reshape(batch, num_video, -1)
            mask = torch.zeros(batch, num_video, dtype=torch.bool)
            mask[:, : prefix_latent_frames(len(prefix), vc.patch_t) * grid[1] * grid[2]] = True
            clean[0] = (mask, z)
        extra_positions = None
        if stills:  # other frames and references: extra clean tokens at their own times
            images = torch.stack([image for _, image, _ in stills])[None].expand(batch, -1, -1, -1, -1)
            extra = still_tokens(vc, images)
            mask, z = clean[0] or (
                torch.zeros(batch, num_video, dtype=torch.bool),
                torch.zeros(batch, num_video, extra.shape[-1]),
            )
            clean[0] = (
                torch.cat([mask, torch.ones(batch, extra.shape[1], dtype=torch.bool)], 1),
                torch.cat([z, extra], 1),
            )
            extra_positions = still_positions([t for t, _, _ in stills], grid[1:])
        num_extra = 0 if extra_positions is None else len(extra_positions)
        if given_audio is not None:
            wave = torch.zeros(batch, ac.channels, num_samples)
            n = min(num_samples, given_audio.shape[1])
            wave[:, :, :n] = torch.from_numpy(given_audio[:, :n])
            mask = torch.zeros(batch, num_audio, dtype=torch.bool)
            mask[:, : n // ac.patch] = True  # only whole patches of given sound are kept clean
            clean[1] = (mask, ac.encode(wave))
        positions = sequence_positions(grid, num_audio, text.shape[1], vc, ac, fps, extra_positions).to(self.device)
        timings = {"encode_s": time.perf_counter() - start}
        # 3. noise, from a seeded CPU generator so a seed gives the same clip on every device
        gen = torch.Generator().manual_seed(int(seed))
        rho = sampling.noise_correlation
        noise = _with_extra(initial_noise(batch, grid, vc.latent_dim, num_audio, ac.latent_dim, rho, gen), num_extra)
        denoise = self._denoiser(sampling, text, text_mask, positions, clean)
        # 4. sample
        t0 = time.perf_counter()
        sigmas = sampling.schedule()
        bar = _progress_bar(len(sigmas) - 1) if progress else None
        try:

            def on_step(i, n):
                if bar is not None:
                    bar[0].update(bar[1], completed=i)
                if callback is not None:
                    callback(i, n)

            def fresh_noise(xs):  # what re-noising draws: noise like the starting noise
                return _with_extra(
                    initial_noise(batch, grid, vc.latent_dim, num_audio, ac.latent_dim, rho, gen), num_extra
                )

            video_lat, audio_lat = sample(denoise, noise, sigmas, sampling.sampler, clean, gen, on_step, fresh_noise)
        finally:
            if bar is not None:
                bar[0].stop()
        timings["denoise_s"] = time.perf_counter() - t0
        # 5. decode; given media are the output's, exactly
        t0 = time.perf_counter()
        frames = vc.decode(video_lat[:, :num_video].reshape(batch, *grid, -1)).numpy()
        if image is not None:
            frames[:, 0] = first.numpy()
        if prefix is not None:
            frames[:, : len(prefix)] = prefix.numpy()
        for _, still, f in stills:
            if f is not None:
                frames[:, f] = still.numpy()
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
            "num_inference_steps": sampling.num_inference_steps,
            "guidance_scale": cfg.scale if cfg is not None else 1.0,
            "audio_guidance_scale": cfg.audio_scale if cfg is not None else 1.0,
            "seed": int(seed),
            "conditions": [{"reference": True} if f is None else {"frame_index": f} for _, _, f in stills]
            + ([{"video_frames": len(prefix)}] if prefix is not None else []),
            "sampling": sampling.to_dict(),
            "device": str(self.device),
            "dtype": dtype_name(self.dtype),
        }
        if output_type == "pt":
            frames, sound = torch.from_numpy(frames), torch.from_numpy(sound)
        return HappyHorseOutput(frames, sound, fps, ac.sample_rate, mode, settings, timings)

    def _denoiser(self, sampling: SamplingConfig, text, text_mask, positions, clean):
        """The x0 predictor the samplers call: the model's prediction, pushed by each guidance term of
        `sampling` at the noise levels where it applies (diffusion/guidance.py): classifier-free guidance
        from the unconditional prediction, autoguidance from the guide model's conditional one."""
        device, dtype = self.device, self.dtype
        cfg, auto = sampling.classifier_free, sampling.autoguidance
        text, text_mask = text.to(device, dtype), text_mask.to(device)
        given = [c[0] if c is not None else None for c in clean]  # [B, N] masks of clean tokens

        def predict(model, xs, sigma: float, reps: int) -> list[torch.Tensor]:
            """x0 of [video, audio] for `reps` copies of the batch: the prompts, then the empty prompts."""
            b = xs[0].shape[0]
            masks = [
                (m if m is not None else torch.zeros(x.shape[:2], dtype=torch.bool)).repeat(reps, 1)
                for x, m in zip(xs, given, strict=True)
            ]
            inputs = [x.repeat(reps, 1, 1) for x in xs]
            sig_tokens = torch.cat([(~masks[0]).float(), (~masks[1]).float()], dim=1) * sigma  # clean tokens: 0
            out = model(
                inputs[0].to(device, dtype),
                inputs[1].to(device, dtype),
                text[: reps * b],
                text_mask[: reps * b],
                positions,
                masks[0].to(device),
                masks[1].to(device),
                sig_tokens.to(device, dtype),
            )
            return [out.video.float().cpu(), out.audio.float().cpu()]  # the network predicts x0

        def denoise(xs, sigma: float):
            b = xs[0].shape[0]
            guided = cfg is not None and cfg.applies(sigma)
            x0 = predict(self.transformer, xs, sigma, 2 if guided else 1)
            cond = [x[:b] for x in x0]
            if guided:
                x0 = cfg.combine(cond, [x[b:] for x in x0])
            if auto is not None and auto.applies(sigma):
                x0 = auto.combine(x0, cond, predict(self.guide_transformer, xs, sigma, 1))
            return x0

        return denoise


def _with_extra(noise: list[torch.Tensor], num_extra: int) -> list[torch.Tensor]:
    """Video noise with `num_extra` slots appended for clean still tokens (imposed before any step)."""
    if not num_extra:
        return noise
    video = noise[0]
    return [torch.cat([video, video.new_zeros(video.shape[0], num_extra, video.shape[2])], 1), *noise[1:]]


def _progress_bar(total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    bar.start()
    return bar, bar.add_task("denoise", total=total)


__all__ = ["HappyHorseOutput", "HappyHorsePipeline"]
