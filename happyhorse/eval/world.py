"""World metrics: physics, object permanence and prompt following, measured on tracked objects.

They need to know what the prompt asked for (`facts`: colours, shapes, sizes, motions, directions,
bounces), which world clips carry in their sidecar and captions state; `facts_from_caption` reads
them back from a world-style caption. Pixel geometry follows the world's camera: the floor band is
FLOOR_FRACTION of the frame and the room is ROOM_HEIGHT metres tall.
"""

from __future__ import annotations

import re

import numpy as np

from ..world.caption import MATERIAL_WORDS, NUMBERS, SHAPE_WORDS, SIZE_WORDS, TIMES
from ..world.scene import COLOURS, FLOOR_FRACTION, GRAVITY, ROOM_HEIGHT, SIZES, WALL_FRACTION
from .tracking import Track

MIN_RISE_PX = 0.3  # a floor bounce: the track's lowest point rises again by at least this much
# ... and, within two frames, by at least this much: H.264 and shading move the centre of an object
# sliding or rolling on the floor by up to ~0.5 px at 64 px, which MIN_RISE_PX alone counted as bounces;
# the smallest rebound the world makes (1.2 m/s, world.physics.SETTLE_SPEED) rises 7 cm
REBOUND_RISE_M = 0.03


def pixels_per_metre(height: int) -> float:
    return height * (1 - FLOOR_FRACTION) / ROOM_HEIGHT


# ------------------------------------------------------------------------------------ facts


def speech_from_caption(caption: str) -> dict | None:
    """The quoted line, its language and the speaking face's colour in a caption such as
    `A round green face says "bonjour" in French.`; None when the caption quotes no line in a language
    the world speaks, or names no coloured face."""
    from ..world.speech import spoken_line

    try:
        said = spoken_line(caption)
    except ValueError:
        return None
    if said is None:
        return None
    rest = re.sub(r'"[^"]*"', '""', caption.lower())
    colour_re = "|".join(COLOURS)
    # "the green one says", "a round green face speaks", else the only coloured face named
    speaker = re.search(rf"\b({colour_re})(?: \w+)? (?:face|one) (?:says|speaks)", rest)
    faces = re.findall(rf"\b({colour_re})(?: \w+)? face\b", rest)
    colour = speaker.group(1) if speaker else (faces[0] if len(set(faces)) == 1 else None)
    if colour is None:
        return None
    return {"line": said[0], "language": said[1], "speaker": {"colour": colour}}


def facts_from_caption(caption: str) -> dict:
    """Objects (colour, shape, size, motion, direction, bounces) named in a world-style caption, and the
    quoted line (`speech`) where a face says one."""
    said = speech_from_caption(caption)
    text = re.sub(r'"[^"]*"', '""', caption.lower())  # a quoted line names no object
    shape_of = {w: s for s, words in SHAPE_WORDS.items() for w in words}
    size_of = {w: s for s, words in SIZE_WORDS.items() for w in words}
    materials = set(MATERIAL_WORDS.values())
    colour_re = "|".join(COLOURS)
    pattern = re.compile(
        rf"(?:(\w+) )?({colour_re}) (?:(\w+) )?({'|'.join(shape_of)})\b(.*?)(?=(?:,| and) (?:a|an) |;|\.|$)"
    )
    objects, seen = [], set()
    for m in pattern.finditer(text):
        size_word, colour, material_word, shape_word, rest = m.groups()
        if colour in seen or (material_word and material_word not in materials):
            continue
        seen.add(colour)
        direction = re.search(r"to the (left|right)", rest)
        motion = "rest"
        if re.search(r"\b(falls|drops|is dropped)\b", rest):
            motion = "drop"
        elif re.search(r"\b(thrown|flies|tossed)\b", rest):
            motion = "throw"
        elif re.search(r"\b(rolls|slides|glides)\b", rest):
            motion = "slide"
        bounces = None
        if "without bouncing" in rest:
            bounces = 0
        for n, word in TIMES.items():
            if f"bounces {word}" in rest:
                bounces = n
        objects.append(
            {
                "colour": colour,
                "shape": shape_of[shape_word],
                "size": size_of.get(size_word or ""),
                "motion": motion,
                "direction": direction.group(1) if direction else None,
                "bounces": bounces,
            }
        )
    count = len(objects)
    for n, word in NUMBERS.items():
        if re.search(rf"\b{word} (objects|shapes)\b", text):
            count = n
    facts = {"count": count, "objects": objects}
    if said:
        facts["speech"] = said
    return facts


# ------------------------------------------------------------------------------------ motion


def peaks(series: np.ndarray, min_step: float = MIN_RISE_PX) -> list[int]:
    """Local maxima of a sampled motion, also where two samples straddle the turn at equal height."""
    out = []
    for k in range(1, len(series) - 1):
        window = series[k - 1 : k + 3]
        if np.isnan(window[:3]).any():
            continue
        rise, fall = series[k] - series[k - 1], series[k] - series[k + 1]
        if rise > min_step and fall > min_step:
            out.append(k)
        elif (
            rise > min_step
            and abs(fall) <= min_step
            and k + 2 < len(series)
            and series[k + 1] - series[k + 2] > min_step
        ):
            out.append(k if fall >= 0 else k + 1)
    return out


def floor_bounces(track: Track, height: int, floor_tolerance_px: float = 2.5) -> list[int]:
    """Frames where the object is at its lowest near the floor and rises again (row is downwards).

    The impact falls between frames, so the lowest frame may already be off the floor by up to the
    distance travelled in a frame: the tolerance grows with the speed.
    """
    y = track.xy()[:, 1]
    floor = height * (1 - FLOOR_FRACTION)
    rise = REBOUND_RISE_M * pixels_per_metre(height)
    out = []
    for k in peaks(y):
        bottom = track.bottoms[k]
        speed = np.nanmax(np.abs(np.diff(y[max(0, k - 2) : k + 3]))) if k > 0 else 0.0
        rebounds = np.nanmin(y[k + 1 : k + 3]) <= y[k] - rise if k + 1 < len(y) else False
        if bottom is not None and bottom >= floor - max(floor_tolerance_px, 0.75 * speed) and rebounds:
            out.append(k)
    return out


def landings(track: Track, height: int, tolerance_px: float = 1.5) -> list[int]:
    """Frames where a falling object reaches the floor and stays there (the end of its bouncing)."""
    y = track.xy()[:, 1]
    floor = height * (1 - FLOOR_FRACTION)
    out = []
    for k in range(1, len(y) - 1):
        bottom = track.bottoms[k]
        if bottom is None or np.isnan(y[k - 1 : k + 2]).any():
            continue
        if bottom >= floor - tolerance_px and y[k] - y[k - 1] > MIN_RISE_PX and abs(y[k + 1] - y[k]) < 0.5:
            out.append(k)
    return out


def contact_frames(track: Track, others: list[Track], margin_px: float = 1.5) -> set[int]:
    """Frames where this object's box comes within `margin_px` of another object's box."""
    out = set()
    for k, box in enumerate(track.boxes):
        if box is None:
            continue
        for other in others:
            ob = other.boxes[k] if k < len(other.boxes) else None
            if ob is None:
                continue
            gap_x = max(ob[0] - (box[0] + box[2]), box[0] - (ob[0] + ob[2]))
            gap_y = max(ob[1] - (box[1] + box[3]), box[1] - (ob[1] + ob[3]))
            if max(gap_x, gap_y) <= margin_px:
                out.add(k)
    return out


def wall_reversals(track: Track, width: int, near_px: float = 2.5) -> list[int]:
    """Frames where horizontal motion reverses with the object at a side wall (within a frame's travel)."""
    x = track.xy()[:, 0]
    wall = WALL_FRACTION * width
    out = []
    for sign, candidates in ((1, peaks(x)), (-1, peaks(-x))):
        for k in candidates:
            box = track.boxes[k] if k < len(track.boxes) else None
            if box is None:
                continue
            tolerance = max(near_px, 0.75 * float(np.nanmax(np.abs(np.diff(x[max(0, k - 2) : k + 3])))))
            gap = (width - wall) - (box[0] + box[2]) if sign > 0 else box[0] - wall
            if gap <= tolerance:
                out.append(k)
    return sorted(out)


def stop_frame(track: Track, still_px: float = 0.15) -> int | None:
    """The first frame from which the object no longer moves, if it moved before."""
    xy = track.xy()
    step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    moving = np.where(~(step < still_px))[0]  # NaN counts as moving
    if len(moving) == 0 or moving[-1] == len(step) - 1:
        return None
    return int(moving[-1] + 1)


def impact_frames(track: Track, others: list[Track], width: int, height: int) -> list[int]:
    """Frames at which the law of motion may change: bounces, landings, wall hits, contacts, stopping."""
    cuts = set(floor_bounces(track, height)) | set(landings(track, height)) | set(wall_reversals(track, width))
    cuts |= contact_frames(track, others)
    stop = stop_frame(track)
    if stop is not None:
        cuts.add(stop)
    return sorted(cuts)


def segments(track: Track, others: list[Track], width: int, height: int) -> list[np.ndarray]:
    """Runs of visible frames between impacts; the impact frames themselves belong to no run."""
    cuts = impact_frames(track, others, width, height)
    visible = track.visible.copy()
    visible[cuts] = False
    runs, current = [], []
    for k, v in enumerate(visible):
        if v:
            current.append(k)
        elif current:
            runs.append(np.array(current))
            current = []
    if current:
        runs.append(np.array(current))
    return runs


def physics_fit(track: Track, others: list[Track], fps: float, height: int, width: int) -> dict:
    """Fit each run between impacts with constant acceleration (the world's law of motion).

    residual_px: RMS distance of the centre from the fitted parabola, over runs of >= 4 frames;
    gravity_ratio: fitted downward acceleration of airborne runs over the world's 9.81 m/s^2.
    """
    xy = track.xy()
    residuals, gravities = [], []
    for idx in segments(track, others, width, height):
        if len(idx) < 4:
            continue
        t = idx / fps
        for axis in (0, 1):
            coef = np.polyfit(t, xy[idx, axis], 2)
            residuals.extend((np.polyval(coef, t) - xy[idx, axis]).tolist())
            if axis == 1 and np.ptp(xy[idx, 1]) > 1.5:
                gravities.append(2 * coef[0] / (GRAVITY * pixels_per_metre(height)))
    return {
        "residual_px": float(np.sqrt(np.mean(np.square(residuals)))) if residuals else None,
        "gravity_ratio": float(np.median(gravities)) if gravities else None,
    }


def impact_times(track: Track, fps: float, width: int, height: int) -> list[float]:
    """Sub-frame times (s) of floor bounces and wall hits: where the motion fitted on the frames
    before and after each impact cross."""
    xy = track.xy()
    times = []
    for frames, axis in ((floor_bounces(track, height), 1), (wall_reversals(track, width), 0)):
        for k in frames:
            before = [i for i in range(k - 3, k) if i >= 0 and not np.isnan(xy[i, axis])]
            after = [i for i in range(k + 1, k + 4) if i < len(xy) and not np.isnan(xy[i, axis])]
            if len(before) < 2 or len(after) < 2:
                times.append(k / fps)
                continue
            deg_b, deg_a = min(2, len(before) - 1), min(2, len(after) - 1)
            fb = np.polyfit(np.array(before) / fps, xy[before, axis], deg_b)
            fa = np.polyfit(np.array(after) / fps, xy[after, axis], deg_a)
            diff = np.polysub(np.pad(fb, (2 - deg_b, 0)), np.pad(fa, (2 - deg_a, 0)))
            roots = np.roots(np.trim_zeros(diff, "f")) if np.any(diff) else np.array([])
            lo, hi = (k - 1) / fps, (k + 1) / fps
            real = [r.real for r in roots if abs(r.imag) < 1e-9 and lo <= r.real <= hi]
            times.append(min(real, key=lambda r: abs(r - k / fps)) if real else k / fps)
    return sorted(times)


def classify_motion(track: Track, others: list[Track], width: int, height: int) -> tuple[str | None, str | None]:
    """(motion, direction) from the frames before the first impact: rest, slide, drop or throw."""
    xy = track.xy()
    cuts = impact_frames(track, others, width, height)
    end = max(3, cuts[0]) if cuts else len(xy)
    first = xy[:end][track.visible[:end]]
    if len(first) < 2:
        return None, None
    dx = first[-1, 0] - first[0, 0]
    y_range = np.ptp(first[:, 1])
    direction = None if abs(dx) < 1.0 else ("right" if dx > 0 else "left")
    if abs(dx) < 1.0:
        return ("rest", None) if y_range < 1.0 else ("drop", None)
    return ("slide", direction) if y_range < 1.0 else ("throw", direction)


# ------------------------------------------------------------------------------------ metrics


def world_metrics(tracks: dict[str, Track], facts: dict, fps: float, height: int, width: int) -> dict:
    """Raw values of the physics and prompt-following metrics for one clip (talking faces are not objects)."""
    faces = {f["colour"] for f in facts.get("faces", [])}
    if facts.get("speech"):
        faces.add(facts["speech"]["speaker"]["colour"])
    tracks = {c: t for c, t in tracks.items() if c not in faces}
    objects = facts["objects"]
    ppm = pixels_per_metre(height)
    found = {o["colour"]: tracks[o["colour"]].visible.mean() >= 0.5 for o in objects}
    colour_ok, shape_ok, size_ok, dir_ok, motion_ok, bounce_ok = [], [], [], [], [], []
    residuals, gravities, permanence, size_cv, impacts = [], [], [], [], []
    present = [t for t in tracks.values() if t.visible.mean() >= 0.5]
    for o in objects:
        track = tracks[o["colour"]]
        others = [t for t in present if t is not track]
        colour_ok.append(found[o["colour"]])
        shape_ok.append(found[o["colour"]] and track.shape == o["shape"])
        counts = np.array(track.counts)
        permanence.append(float((counts == 1).mean()))
        areas = np.array([a for a in track.areas if a > 0])
        if len(areas) > 2:
            size_cv.append(float(areas.std() / areas.mean()))
            if o.get("size"):
                widths = np.sqrt(np.median(areas) / {"ball": np.pi / 4, "box": 1.0, "triangle": 0.5}[o["shape"]])
                threshold = (SIZES["small"] + SIZES["large"]) * ppm  # between the two sizes' widths
                size_ok.append(("large" if widths > threshold else "small") == o["size"])
        if not found[o["colour"]]:
            if o.get("direction"):
                dir_ok.append(False)
            if o.get("bounces") is not None:
                bounce_ok.append(False)
            motion_ok.append(False)
            continue
        motion, direction = classify_motion(track, others, width, height)
        if o.get("motion") in ("drop", "throw", "slide"):
            motion_ok.append(motion == o["motion"])
        if o.get("direction"):
            dir_ok.append(direction == o["direction"])
        # objects struck by others bounce in ways their prompt does not state: left out when known
        if o.get("bounces") is not None and o.get("motion") in ("drop", "throw") and not o.get("collides_with"):
            bounce_ok.append(len(floor_bounces(track, height)) == o["bounces"])
        fit = physics_fit(track, others, fps, height, width)
        if fit["residual_px"] is not None:
            residuals.append(fit["residual_px"])
        if fit["gravity_ratio"] is not None:
            gravities.append(fit["gravity_ratio"])
        impacts.extend(impact_times(track, fps, width, height))
    detected = sum(1 for c, t in tracks.items() if t.visible.mean() >= 0.5)

    def mean(values):
        return float(np.mean(values)) if values else None

    return {
        "colour_accuracy": mean(colour_ok),
        "shape_accuracy": mean(shape_ok),
        "size_accuracy": mean(size_ok),
        "count_accuracy": float(detected == facts["count"]),
        "direction_accuracy": mean(dir_ok),
        "motion_accuracy": mean(motion_ok),
        "bounce_count_accuracy": mean(bounce_ok),
        "physics_residual_px": mean(residuals),
        "gravity_consistency": mean([max(0.0, 1 - abs(g - 1)) for g in gravities]),
        "object_permanence": mean(permanence),
        "size_constancy": mean([max(0.0, 1 - cv / 0.5) for cv in size_cv]),
        "_impact_times": sorted(impacts),
    }
