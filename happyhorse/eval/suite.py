"""Evaluation suites: a directory of clips, or a model on a fixed, seeded set of world test prompts.

`evaluate_clips` reads NAME.mp4 (+ NAME.json sidecar: world ground truth, or a generation record) and
aggregates every metric; `evaluate_model` first generates the test-split prompts in every mode (T2V,
TI2V with the world clip's first frame, TA2V with its soundtrack), then evaluates them beside the
same prompts' ground-truth clips, the ceiling a model can reach.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..media import read_image, read_video, save_audio, save_image, write_json_atomic
from .metrics import METRICS, evaluate_clip
from .world import facts_from_caption

MODES = ("T2V", "TI2V", "TA2V")
# first + last frame, subject reference (the prompt without its colour), a 15 s clip, three shots
CONTROL_MODES = ("FLF2V", "R2V", "LONG", "SHOTS")
LONG_SECONDS = 15.0
SUITES = ("world", "temporal", "speech", "control", "all")


def _clip_facts(sidecar: dict) -> dict | None:
    if sidecar.get("facts"):
        return sidecar["facts"]
    text = sidecar.get("caption") or sidecar.get("prompt")
    return facts_from_caption(text) if text else None


def given_media(sidecar: dict, fps: float) -> dict:
    """What a generation record says was given besides the prompt and first frame, read for the control
    metrics: last image, keyframes as (frame, image), references, and the seams and cuts of long clips."""

    def image(path):
        return read_image(path) if path and Path(path).is_file() else None

    settings = sidecar.get("settings") or {}
    given = {
        "last_image": image(sidecar.get("last_image")),
        "keyframes": [(round(t * fps), im) for t, p in sidecar.get("keyframes") or [] if (im := image(p)) is not None],
        "references": [im for p in sidecar.get("references") or [] if (im := image(p)) is not None],
        "seams": settings.get("seams") or [],
        "cuts": settings.get("cuts", sidecar.get("cuts")),  # a generation's, or a multi-shot world clip's
        "shots": len(settings.get("shots") or sidecar.get("shots") or []),
    }
    return {k: v for k, v in given.items() if v is not None and not (isinstance(v, list | int) and not v)}


def evaluate_path(path: str, suite: str) -> dict:
    """One clip's record: path, mode, metrics, and extras for the plots."""
    path = Path(path)
    sidecar_path = path.with_suffix(".json")
    sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.exists() else {}
    clip = read_video(path)
    image = None
    if sidecar.get("image") and Path(sidecar["image"]).is_file():
        image = read_image(sidecar["image"])
    seconds = (sidecar.get("timings") or {}).get("total_s")
    metrics, extras = evaluate_clip(
        clip.frames,
        clip.fps,
        clip.audio,
        clip.sample_rate,
        _clip_facts(sidecar),
        image,
        seconds,
        suite,
        given_media(sidecar, clip.fps),
    )
    return {
        "path": str(path),
        "mode": sidecar.get("test_mode") or sidecar.get("mode", "world" if "events" in sidecar else None),
        "prompt": sidecar.get("caption") or sidecar.get("prompt"),
        "metrics": metrics,
        "extras": extras,
    }


def pooled_interval(clips: list[dict], rounds: int = 2000, seed: int = 0) -> list[float]:
    """95 % interval of the pooled share of impacts within one frame, by resampling whole clips: a clip's
    impacts share one sound and one drawing, so they are not independent draws (fixed seed: a report
    reads the same every time)."""
    hits, counts = [], []
    for c in clips:
        offsets = c.get("extras", {}).get("offsets_ms", [])
        if offsets:
            hits.append(sum(abs(o) <= c["extras"]["frame_ms"] for o in offsets))
            counts.append(len(offsets))
    if not hits:
        raise ValueError("pooled_interval: no clip has an impact")
    hits, counts = np.array(hits, dtype=float), np.array(counts, dtype=float)
    picks = np.random.default_rng(seed).integers(0, len(hits), (rounds, len(hits)))
    shares = hits[picks].sum(1) / counts[picks].sum(1)
    return [float(np.percentile(shares, 2.5)), float(np.percentile(shares, 97.5))]


def aggregate(clips: list[dict]) -> dict:
    """Mean value and score of each metric over the clips that have it; sync offsets are pooled."""
    out = {}
    for name, info in METRICS.items():
        entries = [c["metrics"][name] for c in clips if c["metrics"].get(name, {}).get("value") is not None]
        if not entries:
            continue
        out[name] = {
            "value": float(np.mean([e["value"] for e in entries])),
            "unit": info.unit,
            "score": float(np.mean([e["score"] for e in entries])),
            "clips": len(entries),
        }
    pooled = [(o, c["extras"]["frame_ms"]) for c in clips for o in c.get("extras", {}).get("offsets_ms", [])]
    if pooled:
        offsets = np.abs([o for o, _ in pooled])
        within = float(np.mean([abs(o) <= frame for o, frame in pooled]))
        out["av_offset_ms"].update(value=float(np.median(offsets)), score=within, impacts=len(pooled))
        if sum(bool(c.get("extras", {}).get("offsets_ms")) for c in clips) >= 2:  # one clip has no spread
            out["av_offset_ms"]["score_interval_95"] = pooled_interval(clips)
    permanence = [c["metrics"]["object_permanence"]["value"] for c in clips if "object_permanence" in c["metrics"]]
    if permanence:
        rate = float(np.mean(np.array(permanence) >= 0.95))
        out["object_persistence_rate"] = {"value": rate, "unit": "fraction", "score": rate, "clips": len(permanence)}
    return out


def evaluate_clips(directory: str | Path, suite: str = "all", workers: int | None = None, progress=None) -> dict:
    directory = Path(directory)
    paths = sorted(str(p) for p in directory.glob("*.mp4"))
    if not paths:
        raise FileNotFoundError(f"--clips: no .mp4 files in {directory}")
    start = time.perf_counter()
    workers = workers or min(len(paths), os.cpu_count() or 1)
    clips = []
    if workers > 1:
        # spawned, never forked: this process has started torch's and PyAV's threads, and a forked child
        # inherits their locks held; it deadlocked inside read_video (`happyhorse eval --model`)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for record in pool.map(evaluate_path, paths, [suite] * len(paths), chunksize=4):
                clips.append(record)
                if progress:
                    progress()
    else:
        for p in paths:
            clips.append(evaluate_path(p, suite))
            if progress:
                progress()
    by_mode = {
        m: aggregate([c for c in clips if c["mode"] == m]) for m in sorted({c["mode"] for c in clips if c["mode"]})
    }
    languages = sorted({c["extras"]["language"] for c in clips if c.get("extras", {}).get("language")})
    by_language = {lang: aggregate([c for c in clips if c["extras"].get("language") == lang]) for lang in languages}
    return {
        "metrics": aggregate(clips),
        "by_mode": by_mode,
        "by_language": by_language,
        "clips": clips,
        "model": None,
        "settings": {"clips": str(directory), "suite": suite, "count": len(clips)},
        "timings": {
            "evaluate_s": time.perf_counter() - start,
            "seconds_per_clip_evaluated": (time.perf_counter() - start) / len(clips),
        },
    }


def generate_test_set(
    model_dir,
    out: Path,
    count: int,
    progress=None,
    overrides: dict | None = None,
    first: int = 0,
    modes: tuple[str, ...] = MODES,
    device: str | None = None,
    dtype: str | None = None,
    kind: str = "physics",
) -> tuple[Path, Path, dict]:
    """Generate test-split prompts first .. first + count - 1 cycling T2V, TI2V, TA2V (by prompt number);
    write the matching ground truth. Settings chosen on one range can be confirmed on another; `modes`
    keeps the prompts of those modes only (a setting that changes one mode is measured on it alone).
    Modes of CONTROL_MODES (issue 43) cycle in the order given instead: FLF2V gives the ground truth's
    first and last frames, R2V its subject's reference with the prompt's colour word left out, LONG asks
    for LONG_SECONDS, SHOTS makes the caption's three phrasings as three shots.

    `overrides` are request fields every clip takes (`num_inference_steps`, `guidance_scale`,
    `audio_guidance_scale`: generate.GenerateRequest), checked before the first clip.
    `device` and `dtype` as `load_pipeline` takes them (None: the CPU in float32). `kind`: the world
    clips (world.sample.KINDS) whose captions, first frames and soundtracks are the prompts."""
    from ..devices import dtype_name
    from ..generate import GenerateRequest, check_request, load_pipeline, run_generate
    from ..world import make_clip, write_sample

    if not modes or not set(modes) <= set(MODES + CONTROL_MODES):
        raise ValueError(f"modes: a non-empty subset of {list(MODES + CONTROL_MODES)}, got {list(modes)}")
    cycle = MODES if set(modes) <= set(MODES) else tuple(modes)
    pipe = load_pipeline(model_dir, device, dtype)
    overrides = dict(overrides or {})
    check_request(pipe, GenerateRequest("", **overrides))
    config = pipe.components.world_config()
    clips_dir, truth_dir = out / "clips", out / "ground_truth"
    for i in range(first, first + count):
        mode = cycle[i % len(cycle)]
        if mode not in modes:
            continue
        truth = make_clip(i, "test", config, kind=kind, references=mode == "R2V")
        write_sample(truth, truth_dir, f"{i:03d}")
        request = _test_request(mode, truth, clips_dir / f"{i:03d}", i, overrides)
        name = clips_dir / f"{i:03d}_{mode}.mp4"
        sidecar = run_generate(pipe, request, name)
        sidecar["facts"] = truth.meta["facts"]
        sidecar["test_mode"] = mode  # the test's own name (FLF2V, LONG, ...); `mode` is the pipeline's
        write_json_atomic(name.with_suffix(".json"), json.dumps(sidecar, indent=1))
        if progress:
            progress()
    settings = {
        "model": str(model_dir) if model_dir else "embedded default",
        "count": count,
        "first": first,
        "modes": list(modes),
        "split": "test",
        "kind": kind,
        "sampling": pipe.sampling.with_overrides(
            overrides.get("num_inference_steps"), overrides.get("guidance_scale"), overrides.get("audio_guidance_scale")
        ).to_dict(),
        **overrides,
        "device": str(pipe.device),
        "dtype": dtype_name(pipe.dtype),
        "guide_transformer": pipe.guide_transformer is not None,  # what autoguidance steered from
    }
    return clips_dir, truth_dir, settings


def _test_request(mode: str, truth, stem: Path, seed: int, overrides: dict):
    """The request of one test prompt in `mode`, its given media written beside as STEM_*.png / .wav."""
    import re

    from ..generate import GenerateRequest

    image = save_image(f"{stem}_first.png", truth.frames[0]) if mode in ("TI2V", "FLF2V") else None
    sound = save_audio(f"{stem}_sound.wav", truth.audio, truth.sample_rate) if mode == "TA2V" else None
    fields = dict(seed=seed, **overrides)
    prompt = truth.caption
    if mode == "FLF2V":
        fields["last_image"] = save_image(f"{stem}_last.png", truth.frames[-1])
    elif mode == "R2V":
        subject = truth.meta["subject"]
        fields["references"] = (save_image(f"{stem}_reference.png", truth.meta["references"][subject]),)
        prompt = re.sub(rf"\b{subject} ", "", prompt, count=1)  # the colour must come from the reference
    elif mode == "LONG":
        fields["seconds"] = LONG_SECONDS
    elif mode == "SHOTS":
        shots = tuple(truth.meta["captions"][:3])
        fields.update(shots=shots, seconds=len(shots) * (truth.frames.shape[0] / truth.fps + 0.25))
        prompt = ""
    return GenerateRequest(prompt, image, sound, **fields)


def evaluate_model(
    model_dir,
    out: str | Path,
    suite: str = "all",
    count: int = 30,
    progress=None,
    overrides: dict | None = None,
    first: int = 0,
    modes: tuple[str, ...] = MODES,
    device: str | None = None,
    dtype: str | None = None,
    kind: str = "physics",
) -> dict:
    out = Path(out)
    start = time.perf_counter()
    clips_dir, truth_dir, settings = generate_test_set(
        model_dir, out, count, progress, overrides, first, modes, device, dtype, kind
    )
    generated = time.perf_counter()
    report = evaluate_clips(clips_dir, suite)
    reference = evaluate_clips(truth_dir, suite)
    report["reference"] = {
        "metrics": reference["metrics"],
        "by_language": reference["by_language"],
        "clips": str(truth_dir),
    }
    report["model"] = settings["model"]
    report["settings"] = {**report["settings"], **settings}
    report["timings"].update(generate_s=generated - start, total_s=time.perf_counter() - start)
    return report
