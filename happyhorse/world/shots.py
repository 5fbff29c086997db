"""Multi-shot world clips: one physics scene in two or three shots with hard cuts between.

Every cut changes the framing, wide (the whole room) to close-up (framed on the subject, 1.6-2.2x
larger) and back: a jump to a later moment in the same framing is all but invisible in a room of small
objects. Half the cuts also jump 0.4-1 s on, picture and sound together; the others keep the moment,
and the sound runs on across them.
The ground truth holds each shot's frames, framing, zoom, crop and time offset, every frame's world
time and each object's pixel in that frame's framing; the caption says what the first shot shows and
how each cut changes the view ("Cut to a close-up of the red ball."), so a model can learn what a cut is
and `eval` can check where it is.
"""

from __future__ import annotations

import numpy as np

from ..media import Clip
from .caption import captions, scene_facts
from .render import Camera, render, render_reference
from .scene import SPLITS
from .sound import soundtrack

MIN_SHOT_FRAMES = 6
CLOSE_ZOOM = (1.6, 2.2)
LATER_JUMP_S = (0.4, 1.0)


def plan_shots(rng: np.random.Generator, num_frames: int) -> list[dict]:
    """Two or three shots covering the frames, each at least MIN_SHOT_FRAMES long (half the clip in a
    shorter one), wide and close-up in
    turn, each later one a moment later or not."""
    if num_frames < 4:
        raise ValueError(f"kind: a multi-shot clip needs at least 4 frames, got {num_frames}")
    shortest = min(MIN_SHOT_FRAMES, num_frames // 2)  # short clips: shorter shots
    n = 3 if num_frames >= 3 * shortest and rng.random() < 0.3 else 2
    while True:
        cuts = sorted(int(c) for c in rng.integers(shortest, num_frames - shortest + 1, n - 1))
        bounds = [0, *cuts, num_frames]
        if all(b - a >= shortest for a, b in zip(bounds[:-1], bounds[1:], strict=True)):
            break
    shots, offset = [], 0.0
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        framing = "close" if k % 2 else "wide"
        zoom = float(rng.uniform(*CLOSE_ZOOM)) if framing == "close" else 1.0
        later = k > 0 and rng.random() < 0.5
        if later:
            offset += float(rng.uniform(*LATER_JUMP_S))
        shot = {"start": a, "end": b, "framing": framing, "zoom": zoom, "later": later}
        shots.append({**shot, "time_offset": round(offset, 6)})
    return shots


def make_shots_clip(seed: int, split: str, config, physics, *, ground_truth: bool, references: bool) -> Clip:
    """The multi-shot clip of (seed, split); `physics(seed, split, config, seconds)` simulates its scene."""
    rng = np.random.default_rng([int(seed), 17, SPLITS[split]])
    n_frames, fps, sr = config.num_frames, config.fps, config.sample_rate
    plan = plan_shots(rng, n_frames)
    seconds = n_frames / fps
    total = seconds + plan[-1]["time_offset"]
    scene, trajectory = physics(seed, split, config, total)
    scene.seed = int(seed)
    subject = scene.objects[0]
    offsets = np.concatenate([np.full(s["end"] - s["start"], s["time_offset"]) for s in plan])
    times = np.arange(n_frames) / fps + offsets
    positions, velocities = trajectory.at(times)
    w, h = config.width, config.height
    frames, pixels = [], []
    for shot in plan:
        a, b, z = shot["start"], shot["end"], shot["zoom"]
        wz, hz = int(round(w * z)), int(round(h * z))
        cam = Camera(wz, hz, scene.height_m)
        centre = cam.to_pixels(positions[a, 0])
        x0 = int(np.clip(round(centre[0] - w / 2), 0, wz - w))
        y0 = int(np.clip(round(centre[1] - h / 2), 0, hz - h))
        shot["crop"] = [x0, y0]
        frames.append(render(scene, positions[a:b], wz, hz)[:, y0 : y0 + h, x0 : x0 + w])
        pixels.append(cam.to_pixels(positions[a:b]) - np.array([x0, y0]))
    frames = np.concatenate(frames)
    pixels = np.concatenate(pixels)
    audio_rng = np.random.default_rng([int(seed), 7, SPLITS[split]])
    full, _ = soundtrack(scene, trajectory.events, total + 1.0 / fps, sr, config.channels, audio_rng)
    parts = []
    for shot in plan:  # each shot hears its own stretch of the scene's sound
        first = int(round((shot["start"] / fps + shot["time_offset"]) * sr))
        parts.append(full[:, first : first + int(round(shot["end"] / fps * sr)) - int(round(shot["start"] / fps * sr))])
    audio = np.concatenate(parts, axis=1)[:, : config.num_samples]
    first_shot = plan[0]["end"] / fps
    texts = [_with_cuts(t, plan, subject) for t in captions(scene, trajectory.events, audio_rng, seconds=first_shot)]
    cuts = [s["start"] for s in plan[1:]]
    meta = {"seed": int(seed), "split": split, "kind": "shots", "captions": texts, "subject": subject.colour}
    meta.update(shots=plan, cuts=cuts)
    if references:
        meta["references"] = {o.colour: render_reference(o, w, h) for o in scene.objects}
    if ground_truth:
        meta.update(
            size=[w, h],
            fps=fps,
            sample_rate=sr,
            channels=config.channels,
            num_frames=n_frames,
            scene=scene.to_json(),
            frames=[
                {
                    "time": round(float(t), 6),
                    "shot": next(k for k, s in enumerate(plan) if s["start"] <= j < s["end"]),
                    "objects": [
                        {
                            "position": [round(float(v), 6) for v in positions[j, i]],
                            "velocity": [round(float(v), 6) for v in velocities[j, i]],
                            "pixel": [round(float(v), 3) for v in pixels[j, i]],
                        }
                        for i in range(len(scene.objects))
                    ],
                }
                for j, t in enumerate(times)
            ],
            events=[{**e, "position": [round(float(v), 6) for v in e["position"]]} for e in trajectory.events],
        )
        meta["facts"] = {**scene_facts(scene, trajectory.events, first_shot), "shots": len(plan), "cuts": cuts}
    return Clip(frames=frames, fps=fps, audio=audio.astype(np.float32), sample_rate=sr, caption=texts[0], meta=meta)


def _with_cuts(caption: str, plan: list[dict], subject) -> str:
    """The first shot's caption, then how each cut changes the view."""
    said = [caption]
    for shot in plan[1:]:
        view = f"a close-up of the {subject.colour} {subject.shape}" if shot["framing"] == "close" else "the room"
        said.append(f"Cut to {view}{' a moment later' if shot['later'] else ''}.")
    return " ".join(said)
