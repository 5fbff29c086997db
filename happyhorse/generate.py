"""Generation to files: one request -> NAME.mp4 (H.264 + AAC) + NAME.json (every setting, timings).

Shared by the CLI and the web service, so both write the same files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .media import save_video, write_json_atomic
from .pipeline import HappyHorsePipeline


@dataclass
class GenerateRequest:
    prompt: str
    image: str | Path | None = None
    audio: str | Path | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    seconds: float | None = None
    width: int | None = None
    height: int | None = None
    sampler: str | None = None
    shift: float | None = None
    guidance_interval: tuple[float, float] | None = None
    audio_guidance: float | None = None
    autoguidance: float | None = None
    audio_autoguidance: float | None = None
    autoguidance_interval: tuple[float, float] | None = None
    guide_skip_blocks: tuple[int, ...] | None = None
    guide_frame_local_blocks: tuple[int, ...] | None = None
    guidance_drops: tuple[str, ...] | None = None
    noise_correlation: float | None = None
    contrast_prompt: str | None = None
    contrast_guidance: float | None = None
    contrast_swaps: tuple[tuple[str, str], ...] | None = None
    refine: bool | None = None  # the model's refiner/ redraws the frames (None: whenever it has one)
    self_condition: bool | None = None  # each step reads the last one's x0 (None: wherever the model can)
    restarts: int | None = None
    restart_interval: tuple[float, float] | None = None
    clamp_x0: bool | None = None  # clamp the guided video x0 to the pixel range (None: the model's setting)


def load_pipeline(
    model: str | Path | None = None, device: str | None = None, dtype: str | None = None
) -> HappyHorsePipeline:
    """The model directory (default: the embedded model) on `device` in `dtype` (None: the CPU in float32;
    "auto" for both, as the CLI: `HappyHorsePipeline.from_pretrained`)."""
    return HappyHorsePipeline.from_pretrained(model, device, dtype)


def run_generate(pipe: HappyHorsePipeline, request: GenerateRequest, output: str | Path, callback=None) -> dict:
    """Generate one clip and write it with its sidecar; returns the sidecar's content."""
    start = time.perf_counter()
    result = pipe(
        request.prompt,
        image=str(request.image) if request.image else None,
        audio=str(request.audio) if request.audio else None,
        seconds=request.seconds,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        audio_guidance_scale=request.audio_guidance,
        seed=request.seed,
        height=request.height,
        width=request.width,
        sampler=request.sampler,
        shift=request.shift,
        guidance_interval=request.guidance_interval,
        autoguidance_scale=request.autoguidance,
        audio_autoguidance_scale=request.audio_autoguidance,
        autoguidance_interval=request.autoguidance_interval,
        guide_skip_blocks=request.guide_skip_blocks,
        guide_frame_local_blocks=request.guide_frame_local_blocks,
        guidance_drops=request.guidance_drops,
        noise_correlation=request.noise_correlation,
        contrast_prompt=request.contrast_prompt,
        contrast_guidance_scale=request.contrast_guidance,
        contrast_swaps=request.contrast_swaps,
        refine=request.refine,
        self_condition=request.self_condition,
        restarts=request.restarts,
        restart_interval=request.restart_interval,
        clamp_x0=request.clamp_x0,
        callback=callback,
    )
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
