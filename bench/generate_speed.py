"""Generation speed: seconds per clip and real-time factor, end to end (prompt -> MP4 + sidecar).

    python bench/generate_speed.py [--model DIR] [--repeats 5] [--mode T2V|TI2V|TA2V] [--dtype bfloat16]
    python bench/generate_speed.py --repeats 12 --against DIR [DIR ...]   # several models, in turn

Loads the model once (timed apart, as a server would), then times `run_generate` — text encoding,
sampling with the model's default steps and guidance, decoding and the MP4 write — over several
seeds of the world's test prompts. The real-time factor is clip seconds / wall seconds (> 1: faster
than real time). `--against` times more model directories (e.g. the same weights shipped with other
sampling settings) in turn with the first, prompt by prompt: this machine's speed drifts by up to 30 %
between sittings, and taking turns puts the drift on every model alike. With `--against` the output is a
list, one result per model, `--model` first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from happyhorse.devices import dtype_name
from happyhorse.generate import GenerateRequest, load_pipeline, run_generate
from happyhorse.media import save_audio, save_image
from happyhorse.world import WorldConfig, make_clip


def time_generation(pipe, repeats: int, mode: str = "T2V") -> dict:
    """Seconds per clip of `run_generate` over `repeats` world test prompts, after one warm-up run."""
    return time_in_turn([pipe], repeats, mode)[0]


def time_in_turn(pipes: list, repeats: int, mode: str = "T2V") -> list[dict]:
    """`time_generation` for several pipelines at once: each prompt runs on every pipeline in turn."""
    d = pipes[0].defaults
    world = WorldConfig(d["width"], d["height"], d["fps"], d["seconds"], pipes[0].audio_codec.sample_rate)
    times, sidecars = [[] for _ in pipes], [None] * len(pipes)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k in range(repeats + 1):  # the first run warms up (text encoder, allocator) and is not counted
            truth = make_clip(k, "test", world)
            image = save_image(tmp / f"{k}.png", truth.frames[0]) if mode == "TI2V" else None
            sound = save_audio(tmp / f"{k}.wav", truth.audio, truth.sample_rate) if mode == "TA2V" else None
            request = GenerateRequest(truth.caption, image, sound, seed=k)
            for i, pipe in enumerate(pipes):
                start = time.perf_counter()
                sidecars[i] = run_generate(pipe, request, tmp / f"{k}.mp4")
                if k:
                    times[i].append(time.perf_counter() - start)
    return [summary(pipe, t, sidecar, repeats, mode) for pipe, t, sidecar in zip(pipes, times, sidecars, strict=True)]


def summary(pipe, times: list[float], sidecar: dict, repeats: int, mode: str) -> dict:
    clip_seconds = sidecar["settings"]["seconds"]
    return {
        "model": pipe.name,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "device": str(pipe.device),
        "dtype": dtype_name(pipe.dtype),
        "sampling": sidecar["settings"]["sampling"],
        "clip_seconds": clip_seconds,
        "seconds_per_clip_median": statistics.median(times),
        "seconds_per_clip_max": max(times),
        "real_time_factor": clip_seconds / statistics.median(times),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the embedded default model)")
    parser.add_argument(
        "--against", nargs="+", default=[], metavar="DIR", help="more model directories, timed in turn with --model"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", choices=("T2V", "TI2V", "TA2V"), default="T2V")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto, as the CLI)")
    parser.add_argument(
        "--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: auto, as the CLI)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipes, loads = [], []
    for name, model in (("--model", args.model), *(("--against", m) for m in args.against)):
        t0 = time.perf_counter()
        try:
            pipes.append(load_pipeline(model, args.device, args.dtype))
        except (FileNotFoundError, ValueError) as exc:
            parser.error(f"{name}: {exc}")
        loads.append(time.perf_counter() - t0)
    results = time_in_turn(pipes, args.repeats, args.mode)
    for result, model, load_s in zip(results, [args.model, *args.against], loads, strict=True):
        result["model_dir"] = model or "embedded default"
        result["load_s"] = load_s
    result = results[0] if len(results) == 1 else results
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
