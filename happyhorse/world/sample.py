"""One world clip from (seed, split): scene -> simulation -> frames + sound + captions + ground truth."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..media import Clip, save_image, save_video, write_json_atomic
from .caption import captions, scene_facts
from .physics import SimulationError, Trajectory, simulate
from .render import REFERENCE_BACKDROP, Camera, background, render, render_reference
from .scene import SPLITS, sample_scene
from .shots import make_shots_clip
from .sound import soundtrack
from .talk import (
    draw_faces,
    mouth_curve,
    render_face_reference,
    sample_talk,
    speech_track,
    talk_caption,
    talk_facts,
    talk_record,
)

MAX_ATTEMPTS = 16  # scenes whose simulation is ill-posed are redrawn (deterministically)
FIRST_CONTACT_S = 0.25  # objects that collide sooner never show the motion their caption states
BACKGROUND_GAIN = 0.4  # level of a mixed scene's impacts and ambience under its voice
# objects moving; faces saying a line; one face in a corner of a physics scene; a physics scene in 2-3 shots
KINDS = ("physics", "talk", "mixed", "shots")


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
REFERENCES = "references"  # meta key of the subject references (images: written as NAME_ref_COLOUR.png)


def make_clip(
    seed: int,
    split: str = "train",
    config: WorldConfig | None = None,
    *,
    kind: str = "physics",
    ground_truth: bool = True,
    object_coverage: bool = False,
    references: bool = False,
) -> Clip:
    """The clip of (seed, split, kind): identical bytes for identical arguments.

    `kind` is one of KINDS; a physics clip is the same whether or not other kinds exist, and a talk or
    mixed clip draws its faces and line from a generator of its own.
    `ground_truth=False` skips the per-frame JSON-ready records (faster, for training batches).
    `object_coverage=True` adds meta["object_coverage"]: uint8 [T, H, W], the share of each pixel the
    objects and faces cover (255 = all), for losses weighted towards what a prompt is about.
    `references=True` adds meta["references"]: {colour: uint8 [H, W, 3]}, each object and face rendered on
    its own (subject references); meta["subject"] is always the colour of what the caption is about first.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    config = config or WorldConfig()
    seconds = config.num_frames / config.fps
    if kind == "shots":
        if object_coverage:
            raise ValueError("object_coverage: not made for multi-shot clips")
        return make_shots_clip(seed, split, config, _physics, ground_truth=ground_truth, references=references)
    if kind == "talk":  # the room only: no objects, no ambience under the voice
        scene = sample_scene(seed, split, config.width, config.height)
        scene.objects, scene.ambience, scene.ambience_level = [], None, 0.0
        trajectory = Trajectory(np.zeros(1), np.zeros((1, 0, 6)), [])
    else:
        scene, trajectory = _physics(seed, split, config, seconds)
    scene.seed = int(seed)
    times = np.arange(config.num_frames) / config.fps
    positions, velocities = trajectory.at(times)
    talk = backdrop = None
    if kind != "physics":
        talk = sample_talk(
            np.random.default_rng([int(seed), 11, SPLITS[split]]),
            split,
            config.width,
            config.height,
            seconds,
            config.sample_rate,
            corner=kind == "mixed",
            avoid_colours=tuple(o.colour for o in scene.objects),
        )
        opening = mouth_curve(talk.speech, talk.start, times)
        backdrop = np.repeat(background(scene, config.width, config.height)[None], config.num_frames, axis=0)
        faces_cover = draw_faces(backdrop, talk, times, opening)
    frames = render(scene, positions, config.width, config.height, coverage=object_coverage, backdrop=backdrop)
    if object_coverage:
        frames, covered = frames
        if talk is not None:
            covered = np.maximum(covered, faces_cover)
    rng = np.random.default_rng([int(seed), 7, 0 if split == "train" else 1])
    audio, onsets = soundtrack(
        scene,
        trajectory.events,
        config.num_samples / config.sample_rate,
        config.sample_rate,
        config.channels,
        rng,
    )
    texts = captions(scene, trajectory.events, rng, seconds=seconds) if kind != "talk" else []
    if talk is not None:
        speech, first_sample = speech_track(talk, config.num_samples)
        # the speaker is the foreground: objects sound further away, as a camera on the face hears them
        audio = BACKGROUND_GAIN * audio + speech[None] * (1.0 if config.channels == 1 else np.sqrt(0.5))
        peak = np.abs(audio).max()
        if peak > 0.98:
            audio *= 0.98 / peak
        said = talk_caption(talk, rng)
        texts = (
            said if kind == "talk" else [p[:-1] + "; " + t[0].lower() + t[1:] for p, t in zip(texts, said, strict=True)]
        )
    subject = talk.faces[talk.speaker].colour if kind == "talk" else scene.objects[0].colour
    meta = {"seed": int(seed), "split": split, "kind": kind, "captions": texts, "subject": subject}
    if references:
        w, h = config.width, config.height
        meta[REFERENCES] = {o.colour: render_reference(o, w, h) for o in scene.objects}
        if talk is not None:
            meta[REFERENCES].update({f.colour: render_face_reference(f, w, h, REFERENCE_BACKDROP) for f in talk.faces})
    if object_coverage:
        meta[OBJECT_COVERAGE] = np.round(covered * 255).astype(np.uint8)
    if ground_truth:
        meta.update(_ground_truth(scene, trajectory.events, onsets, positions, velocities, times, config))
        meta["facts"] = scene_facts(scene, trajectory.events, seconds)
        if talk is not None:
            meta["talk"] = talk_record(talk, first_sample, times, opening)
            meta["facts"].update(talk_facts(talk))
    return Clip(
        frames=frames,
        fps=config.fps,
        audio=audio,
        sample_rate=config.sample_rate,
        caption=texts[0],
        meta=meta,
    )


def _physics(seed: int, split: str, config: WorldConfig, seconds: float):
    """The scene of (seed, split) and its simulation; ill-posed scenes are redrawn deterministically."""
    for attempt in range(MAX_ATTEMPTS):
        scene = sample_scene(seed if attempt == 0 else seed + attempt * 1_000_003, split, config.width, config.height)
        try:
            trajectory = simulate(scene, seconds)
        except SimulationError:
            continue
        if not any(e["kind"] == "collision" and e["time"] < FIRST_CONTACT_S for e in trajectory.events):
            return scene, trajectory
    raise SimulationError(f"seed {seed}: no well-posed scene in {MAX_ATTEMPTS} attempts")


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
    """Write `name.mp4` (H.264 + AAC), `name.json` (caption and ground truth) and, where the clip has them,
    its subject references `name_ref_COLOUR.png` into out_dir."""
    out_dir = Path(out_dir)
    mp4 = save_video(out_dir / f"{name}.mp4", clip.frames, clip.fps, clip.audio, clip.sample_rate)
    arrays = (OBJECT_COVERAGE, REFERENCES)  # training inputs and images: never in the sidecar
    sidecar = {"caption": clip.caption, **{k: v for k, v in clip.meta.items() if k not in arrays}}
    if REFERENCES in clip.meta:
        sidecar[REFERENCES] = {
            colour: save_image(out_dir / f"{name}_ref_{colour}.png", image).name
            for colour, image in clip.meta[REFERENCES].items()
        }
    path = out_dir / f"{name}.json"
    write_json_atomic(path, json.dumps(sidecar, indent=1))
    return mp4, path
