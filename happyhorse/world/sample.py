"""One world clip from (seed, split): scene -> simulation -> frames + sound + captions + ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import Clip, save_video, write_json_atomic
from .caption import captions, scene_facts
from .physics import SimulationError, simulate
from .render import Camera, render
from .scene import sample_scene
from .sound import soundtrack

MAX_ATTEMPTS = 16  # scenes whose simulation is ill-posed are redrawn (deterministically)
FIRST_CONTACT_S = 0.25  # objects that collide sooner never show the motion their caption states


@dataclass(frozen=True)
class WorldConfig:
    """Frame size, rate and length of world clips, and their sound format."""

    width: int = 64
    height: int = 64
    fps: float = 12.0
    seconds: float = 2.0
    sample_rate: int = 16000
    channels: int = 1

    def __post_init__(self):
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"size: width and height must be in 16..4096 pixels, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps: must be in 1..120, got {self.fps}")
        if not 0 < self.seconds <= 60:
            raise ValueError(f"seconds: must be in (0, 60], got {self.seconds}")
        if not 8000 <= self.sample_rate <= 96000:
            raise ValueError(f"sample_rate: must be in 8000..96000 Hz, got {self.sample_rate}")
        if self.channels not in (1, 2):
            raise ValueError(f"channels: must be 1 or 2, got {self.channels}")

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    @property
    def num_samples(self) -> int:
        """Audio samples covering exactly the frames' duration."""
        return int(round(self.num_frames / self.fps * self.sample_rate))


OBJECT_COVERAGE = "object_coverage"  # meta key of the object mask (not JSON: never written to sidecars)


def make_clip(
    seed: int,
    split: str = "train",
    config: WorldConfig | None = None,
    *,
    ground_truth: bool = True,
    object_coverage: bool = False,
) -> Clip:
    """The clip of (seed, split): identical bytes for identical arguments.

    `ground_truth=False` skips the per-frame JSON-ready records (faster, for training batches).
    `object_coverage=True` adds meta["object_coverage"]: uint8 [T, H, W], the share of each pixel the
    objects cover (255 = all), for losses weighted towards the objects.
    """
    config = config or WorldConfig()
    seconds = config.num_frames / config.fps
    for attempt in range(MAX_ATTEMPTS):
        scene = sample_scene(seed if attempt == 0 else seed + attempt * 1_000_003, split, config.width, config.height)
        try:
            trajectory = simulate(scene, seconds)
        except SimulationError:
            continue
        if not any(e["kind"] == "collision" and e["time"] < FIRST_CONTACT_S for e in trajectory.events):
            break
    else:
        raise SimulationError(f"seed {seed}: no well-posed scene in {MAX_ATTEMPTS} attempts")
    scene.seed = int(seed)
    times = np.arange(config.num_frames) / config.fps
    positions, velocities = trajectory.at(times)
    frames = render(scene, positions, config.width, config.height, coverage=object_coverage)
    if object_coverage:
        frames, covered = frames
    rng = np.random.default_rng([int(seed), 7, 0 if split == "train" else 1])
    audio, onsets = soundtrack(
        scene,
        trajectory.events,
        config.num_samples / config.sample_rate,
        config.sample_rate,
        config.channels,
        rng,
    )
    texts = captions(scene, trajectory.events, rng, seconds=seconds)
    meta = {"seed": int(seed), "split": split, "captions": texts}
    if object_coverage:
        meta[OBJECT_COVERAGE] = np.round(covered * 255).astype(np.uint8)
    if ground_truth:
        meta.update(_ground_truth(scene, trajectory.events, onsets, positions, velocities, times, config))
        meta["facts"] = scene_facts(scene, trajectory.events, seconds)
    return Clip(
        frames=frames,
        fps=config.fps,
        audio=audio,
        sample_rate=config.sample_rate,
        caption=texts[0],
        meta=meta,
    )


def _ground_truth(scene, events, onsets, positions, velocities, times, config: WorldConfig) -> dict:
    cam = Camera(config.width, config.height, scene.height_m)
    pixels = cam.to_pixels(positions)
    radii = np.array([o.radius for o in scene.objects])
    half_px = radii * cam.ppm
    visible = (
        (pixels[..., 0] + half_px > 0)
        & (pixels[..., 0] - half_px < config.width)
        & (pixels[..., 1] + half_px > 0)
        & (pixels[..., 1] - half_px < config.height)
    )
    frames = [
        {
            "time": round(float(t), 6),
            "objects": [
                {
                    "position": [round(float(v), 6) for v in positions[k, i]],
                    "velocity": [round(float(v), 6) for v in velocities[k, i]],
                    "pixel": [round(float(v), 3) for v in pixels[k, i]],
                    "visible": bool(visible[k, i]),
                }
                for i in range(len(scene.objects))
            ],
        }
        for k, t in enumerate(times)
    ]
    sample_of = {o["event"]: o["sample"] for o in onsets}
    records = []
    for k, e in enumerate(events):
        rec = {key: (round(v, 9) if isinstance(v, float) else v) for key, v in e.items()}
        rec["position"] = [round(float(v), 6) for v in e["position"]]
        if k in sample_of:
            rec["audio_sample"] = sample_of[k]
        records.append(rec)
    scene_json = scene.to_json()
    scene_json["camera"] = {
        "pixels_per_metre": cam.ppm,
        "floor_row": cam.floor_row,
        "radius_px": half_px.tolist(),
    }
    return {
        "size": [config.width, config.height],
        "fps": config.fps,
        "sample_rate": config.sample_rate,
        "channels": config.channels,
        "num_frames": config.num_frames,
        "scene": scene_json,
        "frames": frames,
        "events": records,
    }


def write_sample(clip: Clip, out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write `name.mp4` (H.264 + AAC) and `name.json` (caption and ground truth) into out_dir."""
    out_dir = Path(out_dir)
    mp4 = save_video(out_dir / f"{name}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
    arrays = (OBJECT_COVERAGE,)  # training inputs: never in the sidecar
    sidecar = {"caption": clip.caption, **{k: v for k, v in clip.meta.items() if k not in arrays}}
    path = out_dir / f"{name}.json"
    write_json_atomic(path, json.dumps(sidecar, indent=1))
    return mp4, path
