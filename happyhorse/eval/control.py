"""Control metrics: given frames kept, motion between two given frames, seams of long clips, cuts of
multi-shot clips, and subject references, all weight-free (the world's colour tracker and frame
statistics).

- `frame_psnr`: PSNR of the clip's frame against the image given for it (first, last, keyframe).
- `interpolation_direction`: with a first and a last frame given, the share of objects that move from
  where the first frame has them towards where the last has them: their progress along the implied
  displacement is larger over the clip's second half than over its first.
- `seam_flicker`: mean absolute change of consecutive frames across the seams of a long clip, against
  the same within its windows (1: a seam is no jumpier than any other frame pair).
- `seam_audio_jump`: the largest sample-to-sample step within 5 ms of a seam, against the clip's own
  transients (the 99.9th percentile of its steps elsewhere): above 1, a click louder than the clip's own.
- `detect_cuts` / `cut_accuracy`: frame pairs whose change is an isolated spike (a hard cut), against
  the cuts requested.
- `reference_colour` / `reference_shape`: the subject of a reference image (its largest coloured blob)
  and whether the clip shows it.
"""

from __future__ import annotations

import numpy as np

from .tracking import track_colours

CUT_RATIO = 3.0  # a cut changes a frame by this many times the changes around it, at least
MIN_CUT_CHANGE = 2.0  # and by this much (mean absolute, 0..255): H.264's flutter on a still shot is not a cut
NEIGHBOURS = 3  # frame pairs on each side a cut's change is compared with
MIN_MOVE_PX = 2.0  # an object that moves less between the given frames implies no direction


def frame_psnr(frame: np.ndarray, image: np.ndarray) -> float:
    """PSNR (dB) of a frame against the image given for it; identical is 100 dB."""
    err = np.mean((frame.astype(np.float64) - image.astype(np.float64)) ** 2)
    return 100.0 if err == 0 else float(min(100.0, 10 * np.log10(255.0**2 / err)))


def interpolation_direction(frames: np.ndarray, first: np.ndarray, last: np.ndarray) -> float | None:
    """Share of objects that move the way the given first and last frames imply (their mean progress from
    the first frame's position towards the last's is larger in the clip's second half than in its first);
    None when no object moves at least MIN_MOVE_PX between the two."""
    ends = track_colours(np.stack([first, last]))
    moving = {}
    for colour, track in ends.items():
        a, b = track.centres
        if a is not None and b is not None and np.hypot(b[0] - a[0], b[1] - a[1]) >= MIN_MOVE_PX:
            moving[colour] = (np.array(a), np.array(b))
    if not moving:
        return None
    tracks = track_colours(frames, list(moving))
    half = len(frames) // 2
    ok = []
    for colour, (a, b) in moving.items():
        xy = tracks[colour].xy()
        progress = (xy - a) @ (b - a) / float(np.dot(b - a, b - a))  # 0 at the first frame's place, 1 at the last's
        early, late = progress[1:half], progress[half:-1]  # the given frames themselves left out
        early, late = early[~np.isnan(early)], late[~np.isnan(late)]
        ok.append(bool(early.size and late.size and late.mean() > early.mean()))
    return float(np.mean(ok))


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """Mean absolute change (0..255) of each consecutive frame pair: [T - 1], pair k is frames k, k + 1."""
    f = frames.astype(np.float32)
    return np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))


def seam_flicker(frames: np.ndarray, seams: list[int]) -> float | None:
    """Mean change across seams (pairs seam - 1, seam) over the mean change of the other pairs."""
    changes = frame_changes(frames)
    at = [s - 1 for s in seams if 1 <= s < len(frames)]
    rest = np.delete(changes, at)
    if not at or rest.size == 0:
        return None
    return float(changes[at].mean() / max(rest.mean(), 1e-3))


def seam_audio_jump(
    audio: np.ndarray, sample_rate: int, seam_seconds: list[float], window_s: float = 0.005
) -> float | None:
    """The largest sample step within `window_s` of a seam over the 99.9th percentile of the clip's
    other steps (its own transients); None without seams or sound."""
    mono = np.asarray(audio, np.float64).mean(axis=0)
    steps = np.abs(np.diff(mono))
    half = max(1, int(window_s * sample_rate))
    near = np.zeros(steps.size, bool)
    for t in seam_seconds:
        i = int(round(t * sample_rate))
        near[max(0, i - half) : i + half] = True
    if not near.any() or near.all():
        return None
    reference = np.percentile(steps[~near], 99.9)
    return float(steps[near].max() / max(reference, 1e-6))


def detect_cuts(frames: np.ndarray) -> list[int]:
    """Frames that start a new shot: their change from the frame before is an isolated spike, CUT_RATIO
    times the larger of the median changes just before and just after it (fast motion changes every
    pair alike; a cut, even to a later moment of the same framing, changes one), and >= MIN_CUT_CHANGE."""
    changes = frame_changes(frames)
    cuts = []
    for k, change in enumerate(changes):
        before, after = changes[max(0, k - NEIGHBOURS) : k], changes[k + 1 : k + 1 + NEIGHBOURS]
        if not before.size or not after.size:  # a spike needs both sides: the first and last pairs are not cuts
            continue
        local = max(float(np.median(before)), float(np.median(after)))
        if change >= MIN_CUT_CHANGE and change > CUT_RATIO * max(local, 0.25):
            cuts.append(k + 1)
    return cuts


def cut_accuracy(frames: np.ndarray, requested: list[int], tolerance: int = 1) -> float:
    """1 when the cuts found are the requested ones (each within `tolerance` frames, none extra), else 0."""
    found = detect_cuts(frames)
    if len(found) != len(requested):
        return 0.0
    return float(all(abs(f - r) <= tolerance for f, r in zip(sorted(found), sorted(requested), strict=True)))


def colour_in_every_shot(frames: np.ndarray, cuts: list[int], colour: str) -> float:
    """1 when `colour` is seen in at least half the frames of every shot (the subject kept), else 0."""
    bounds = [0, *sorted(cuts), len(frames)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a and track_colours(frames[a:b], [colour])[colour].visible.mean() < 0.5:
            return 0.0
    return 1.0


def reference_subject(image: np.ndarray) -> tuple[str | None, str | None]:
    """(colour, shape) of a reference image's subject: its largest coloured blob."""
    tracks = track_colours(image[None])
    best = max(tracks.values(), key=lambda t: t.areas[0])
    if best.areas[0] <= 0:
        return None, None
    return best.colour, best.shape


def reference_match(frames: np.ndarray, image: np.ndarray) -> tuple[float | None, float | None]:
    """(colour, shape) agreement of the clip with a reference's subject: the colour seen in at least half
    the frames, and the tracked shape of that colour the reference's."""
    colour, shape = reference_subject(image)
    if colour is None:
        return None, None
    track = track_colours(frames, [colour])[colour]
    seen = track.visible.mean() >= 0.5
    return float(seen), (float(seen and track.shape == shape) if shape else None)
