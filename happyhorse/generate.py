"""Generation to files: one request -> NAME.mp4 (H.264 + AAC) + NAME.json (every setting, timings).

Shared by the CLI, the web service and `eval`, so all write the same files. A request's fields are the
pipeline's call arguments by the same names; the pipeline checks them, once.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .conditioning import Condition
from .media import save_video, write_json_atomic
from .pipeline import HappyHorsePipeline

SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$", re.IGNORECASE)


def parse_size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (width, height), as the CLI's --size and the HTTP API's `size` give it; whether
    the model can make that size is the pipeline's check."""
    match = SIZE.match(text)
    if not match:
        raise ValueError(f"size: expected WIDTHxHEIGHT such as 64x64 or 112x64, got {text[:40]!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class GenerateRequest:
    """One clip as a user asks for it; None takes the model's default."""

    prompt: str
    image: str | Path | None = None  # first frame: image-to-video
    audio: str | Path | None = None  # soundtrack: the video follows the sound
    seconds: float | None = None
    height: int | None = None
    width: int | None = None
    fps: float | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    audio_guidance_scale: float | None = None
    seed: int = 0
    last_image: str | Path | None = None  # the clip's last frame (first + last frame: with image)
    keyframes: tuple[tuple[float, str | Path], ...] = ()  # (seconds into the clip, image) it passes through
    references: tuple[str | Path, ...] = ()  # images of the subject on its own (reference-to-video)
    extend: str | Path | None = None  # an MP4 to continue: the output is it followed by `seconds` more
    shots: tuple[str, ...] = ()  # one prompt per shot, hard cuts between (each after `prompt`, if any)

    def call_arguments(self, fps: float) -> dict:
        """The pipeline's keyword arguments: the fields, paths as strings, and the frames and references as
        `conditions` (a keyframe at t seconds is frame round(t x fps), `fps` the clip's)."""
        args = asdict(self)
        for name in ("image", "audio"):
            args[name] = str(args[name]) if args[name] is not None else None
        conditions = [Condition(image=str(args.pop("last_image")), frame_index=-1)] if self.last_image else []
        args.pop("last_image", None)
        for t, path in args.pop("keyframes"):
            if not (isinstance(t, int | float) and math.isfinite(t) and t >= 0):
                raise ValueError(f"keyframes: a keyframe's time must be a number of seconds >= 0, got {t!r}")
            conditions.append(Condition(image=str(path), frame_index=round(t * fps)))
        conditions += [Condition(image=str(path), reference=True) for path in args.pop("references")]
        args["conditions"] = conditions or None
        args.pop("extend"), args.pop("shots")
        args["prompt"] = self.shot_prompts()[0]  # a single --shot is the prompt (after PROMPT, if any)
        return args

    def shot_prompts(self) -> list[str]:
        """The prompt of each shot: `prompt` alone, or each shot after it."""
        if not self.shots:
            return [self.prompt]
        return [" ".join(p for p in (self.prompt, shot) if p) for shot in self.shots]

    def is_long(self, pipe: HappyHorsePipeline) -> bool:
        """Made in windows (happyhorse/long.py): a clip to continue, several shots, or longer than a window."""
        from .long import window_frames

        fps = float(self.fps or pipe.defaults["fps"])
        longer = self.seconds is not None and self.seconds > window_frames(pipe, fps) / fps + 1e-9
        return bool(self.extend or len(self.shots) > 1 or longer)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def load_pipeline(
    model: str | Path | None = None, device: str | None = None, dtype: str | None = None
) -> HappyHorsePipeline:
    """The model directory (default: the embedded model) on `device` in `dtype` (None: the CPU in float32;
    "auto" for both, as the CLI: `HappyHorsePipeline.from_pretrained`)."""
    return HappyHorsePipeline.from_pretrained(model, device, dtype)


def call_arguments(pipe: HappyHorsePipeline, request: GenerateRequest) -> dict:
    """The request as the pipeline's arguments at the clip's frame rate; a keyframe outside the clip (of
    the request's or the model's length) is refused by name."""
    fps = float(request.fps or pipe.defaults["fps"])
    args = request.call_arguments(fps)
    if request.keyframes and (request.seconds is not None or request.audio is None):
        seconds = request.seconds if request.seconds is not None else pipe.defaults["seconds"]
        num_frames = pipe.video_codec.num_frames(max(1, round(seconds * fps)))
        for t, _ in request.keyframes:
            if isinstance(t, int | float) and round(t * fps) >= num_frames:
                raise ValueError(f"keyframes: {t} s is outside the clip (0 .. {(num_frames - 1) / fps:.2f} s)")
    return args


def check_request(pipe: HappyHorsePipeline, request: GenerateRequest) -> None:
    """Refuse a request before any work (ValueError naming the field): the pipeline's own checks, and
    for a clip made in windows (long.py) its length, shots and the clip it continues."""
    args = call_arguments(pipe, request)
    names = ("prompt", "image", "audio", "seconds", "height", "width", "fps", "seed")
    if request.is_long(pipe):
        from .long import check_long, continued_clip, window_frames

        for name in ("keyframes", "last_image", "references"):
            if getattr(request, name):
                raise ValueError(f"{name}: a clip made in windows (--seconds past one window, --extend, --shot) "
                                 "takes no keyframes, last image or references")  # fmt: skip
        for name in ("image", "audio"):
            if request.extend is not None and getattr(request, name) is not None:
                raise ValueError(f"{name}: a continued clip (--extend) brings its own first frame and sound")
        fps = float(request.fps or pipe.defaults["fps"])
        seconds = request.seconds if request.seconds is not None else window_frames(pipe, fps) / fps
        check_long(pipe, seconds, fps, max(1, len(request.shots)))
        args["seconds"] = window_frames(pipe, fps) / fps
        if request.extend is not None:
            continued_clip(pipe, request.extend, fps, 16, 16)  # readable, with frames: refused by name if not
    for prompt in request.shot_prompts():
        pipe.check_inputs(prompt, *(args[k] for k in names[1:]), conditions=args["conditions"])
    pipe.sampling.with_overrides(args["num_inference_steps"], args["guidance_scale"], args["audio_guidance_scale"])


def run_generate(pipe: HappyHorsePipeline, request: GenerateRequest, output: str | Path, callback=None) -> dict:
    """Generate one clip and write it with its sidecar; returns the sidecar's content."""
    start = time.perf_counter()
    args = call_arguments(pipe, request)
    if request.is_long(pipe):
        from .long import Sampling, make_long

        fps = float(request.fps or pipe.defaults["fps"])
        sampling = Sampling(
            args["num_inference_steps"], args["guidance_scale"], args["audio_guidance_scale"], request.seed
        )
        seconds = request.seconds if request.seconds is not None else pipe.defaults["seconds"]
        result = make_long(
            pipe,
            request.shot_prompts(),
            seconds,
            sampling,
            image=args["image"],
            audio=args["audio"],
            extend=request.extend,
            height=request.height,
            width=request.width,
            fps=fps,
            callback=callback,
        )
    else:
        result = pipe(args.pop("prompt"), args.pop("image"), args.pop("audio"), **args, callback=callback)
    output = Path(output)
    t0 = time.perf_counter()
    save_video(output, result.frames[0], result.fps, result.audio[0], result.sample_rate)
    timings = {**result.timings, "write_s": time.perf_counter() - t0, "total_s": time.perf_counter() - start}
    sidecar = {
        "prompt": request.prompt,
        "mode": result.mode,
        "seed": request.seed,
        "model": pipe.name,
        "image": str(request.image) if request.image else None,
        "audio": str(request.audio) if request.audio else None,
        "last_image": str(request.last_image) if request.last_image else None,
        "keyframes": [[t, str(path)] for t, path in request.keyframes],
        "references": [str(path) for path in request.references],
        "extend": str(request.extend) if request.extend else None,
        "shots": list(request.shots),
        "settings": result.settings,
        "timings": timings,
    }
    write_json_atomic(output.with_suffix(".json"), json.dumps(sidecar, indent=1))
    return sidecar
