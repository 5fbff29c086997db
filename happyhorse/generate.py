"""Generation to files: one request -> NAME.mp4 (H.264 + AAC) + NAME.json (every setting, timings).

Shared by the CLI, the web service and `eval`, so all write the same files. A request's fields are the
pipeline's call arguments by the same names; the pipeline checks them, once.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

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

    def call_arguments(self) -> dict:
        """The pipeline's keyword arguments: the fields, paths as strings."""
        args = asdict(self)
        for name in ("image", "audio"):
            args[name] = str(args[name]) if args[name] is not None else None
        return args

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def load_pipeline(
    model: str | Path | None = None, device: str | None = None, dtype: str | None = None
) -> HappyHorsePipeline:
    """The model directory (default: the embedded model) on `device` in `dtype` (None: the CPU in float32;
    "auto" for both, as the CLI: `HappyHorsePipeline.from_pretrained`)."""
    return HappyHorsePipeline.from_pretrained(model, device, dtype)


def check_request(pipe: HappyHorsePipeline, request: GenerateRequest) -> None:
    """Refuse a request before any work (ValueError naming the field): the pipeline's own checks."""
    args = request.call_arguments()
    pipe.check_inputs(*(args[k] for k in ("prompt", "image", "audio", "seconds", "height", "width", "fps", "seed")))
    pipe.sampling.with_overrides(args["num_inference_steps"], args["guidance_scale"], args["audio_guidance_scale"])


def run_generate(pipe: HappyHorsePipeline, request: GenerateRequest, output: str | Path, callback=None) -> dict:
    """Generate one clip and write it with its sidecar; returns the sidecar's content."""
    start = time.perf_counter()
    args = request.call_arguments()
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
        "settings": result.settings,
        "timings": timings,
    }
    write_json_atomic(output.with_suffix(".json"), json.dumps(sidecar, indent=1))
    return sidecar
