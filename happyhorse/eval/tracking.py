"""Find and follow world objects in frames by colour, and classify their shapes.

World objects are saturated colours on muted rooms, so a pixel belongs to an object colour when its
saturation is high and its hue is nearest that colour's hue. Connected components of each colour are
the candidate objects; their fill ratio and top-heaviness tell ball, box and triangle apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..world.scene import COLOURS, FLOOR_FRACTION, ROOM_HEIGHT, SIZES

MIN_SATURATION = 0.4  # HSV saturation: the world's rooms stay below 0.15, its objects above 0.45
MIN_VALUE = 0.2
MAX_HUE_DISTANCE = 20.0  # degrees; edge pixels blended with the room drift further and are left out


def _hue(rgb) -> float:
    hsv = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2HSV_FULL)[0, 0]
    return float(hsv[0]) * 360 / 256


COLOUR_HUES = {name: _hue(rgb) for name, rgb in COLOURS.items()}


def colour_labels(frames: np.ndarray) -> np.ndarray:
    """Per pixel, the index of the nearest object colour (order of COLOURS), or -1 for background."""
    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV_FULL) for f in frames]).astype(np.float32)
    hue = hsv[..., 0] * 360 / 256
    sat, val = hsv[..., 1] / 255, hsv[..., 2] / 255
    hues = np.array(list(COLOUR_HUES.values()), np.float32)
    dist = np.abs(hue[..., None] - hues)
    dist = np.minimum(dist, 360 - dist)
    labels = dist.argmin(-1).astype(np.int8)
    labels[(sat < MIN_SATURATION) | (val < MIN_VALUE) | (dist.min(-1) > MAX_HUE_DISTANCE)] = -1
    return labels


@dataclass
class Blob:
    area: float
    centre: tuple[float, float]  # (column, row) in pixels
    box: tuple[int, int, int, int]  # column, row, width, height
    mask: np.ndarray = field(repr=False)

    @property
    def bottom(self) -> float:
        return self.box[1] + self.box[3]

    def shape_features(self) -> tuple[float, float]:
        """(fill of the bounding box's four corners, share of the area in the box's upper half)."""
        c, r, w, h = self.box
        crop = self.mask[r : r + h, c : c + w].astype(np.float32)
        k = max(1, round(0.25 * min(w, h)))
        corners = np.concatenate([crop[:k, :k], crop[:k, -k:], crop[-k:, :k], crop[-k:, -k:]], axis=None)
        top = crop[: h // 2].sum() + (crop[h // 2].sum() / 2 if h % 2 else 0)
        return float(corners.mean()), float(top / max(1, crop.sum()))


def classify_shape(corner_fill: float, top_share: float) -> str:
    """Triangles hold about a quarter of their area in their upper half; boxes fill the corners of
    their bounding box, balls leave them empty."""
    if top_share < 0.38:
        return "triangle"
    return "box" if corner_fill > 0.6 else "ball"


def refine_mask(frame: np.ndarray, blob: Blob, pad: int = 2) -> Blob:
    """Sharpen a blob's outline with full-resolution luma: H.264 keeps chroma at half resolution, so
    hue masks of small objects are blurred. Each pixel near the blob goes to whichever is nearer in
    RGB, the blob's median colour or the surrounding room's."""
    h, w = frame.shape[:2]
    c, r, bw, bh = blob.box
    c0, r0, c1, r1 = max(0, c - pad), max(0, r - pad), min(w, c + bw + pad), min(h, r + bh + pad)
    region = frame[r0:r1, c0:c1].astype(np.float32)
    inside = blob.mask[r0:r1, c0:c1]
    ring = np.ones_like(inside)
    ring[pad : pad + bh, pad : pad + bw] = False
    ring &= ~inside
    if inside.sum() < 3 or ring.sum() < 3:
        return blob
    fg, bg = np.median(region[inside], axis=0), np.median(region[ring], axis=0)
    d_fg, d_bg = np.linalg.norm(region - fg, axis=-1), np.linalg.norm(region - bg, axis=-1)
    mask = d_fg < d_bg
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return blob
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    full = np.zeros_like(blob.mask)
    full[r0:r1, c0:c1] = comp == k
    x, y, bw2, bh2 = (int(v) for v in stats[k, :4])
    return Blob(float(stats[k, cv2.CC_STAT_AREA]), blob.centre, (c0 + x, r0 + y, bw2, bh2), full)


def blobs(labels: np.ndarray, colour_index: int, min_area: float) -> list[Blob]:
    mask = (labels == colour_index).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((2, 2), np.uint8))  # fill glints and glass seams
    count, comp, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for k in range(1, count):
        area = float(stats[k, cv2.CC_STAT_AREA])
        if area >= min_area:
            box = tuple(int(v) for v in stats[k, :4])
            out.append(Blob(area, (float(centroids[k, 0]), float(centroids[k, 1])), box, comp == k))
    return out


@dataclass
class Track:
    """One colour's object through the clip; None where no blob of that colour was found."""

    colour: str
    centres: list[tuple[float, float] | None]
    areas: list[float]
    counts: list[int]  # blobs of this colour per frame (1 = one object, as expected)
    bottoms: list[float | None]
    shapes: list[str]
    boxes: list[tuple[int, int, int, int] | None] = field(default_factory=list)

    @property
    def visible(self) -> np.ndarray:
        return np.array([c is not None for c in self.centres])

    def xy(self) -> np.ndarray:
        """[T, 2] centres, NaN where not visible."""
        return np.array([c if c is not None else (np.nan, np.nan) for c in self.centres], dtype=np.float64)

    @property
    def shape(self) -> str | None:
        if not self.shapes:
            return None
        names, counts = np.unique(self.shapes, return_counts=True)
        return str(names[counts.argmax()])


def track_colours(frames: np.ndarray, colours: list[str] | None = None) -> dict[str, Track]:
    """Tracks of the named colours (all object colours if None): each frame's largest blob."""
    labels = colour_labels(frames)
    h, w = frames.shape[1:3]
    # a fifth of the smallest object's area (a small triangle): fringes of glass and anti-aliasing are smaller
    smallest = 0.5 * (2 * SIZES["small"] * h * (1 - FLOOR_FRACTION) / ROOM_HEIGHT) ** 2
    min_area = max(3.0, 0.2 * smallest)
    names = list(COLOURS)
    tracks = {}
    for colour in colours or names:
        index = names.index(colour)
        centres, areas, counts, bottoms, shapes, boxes = [], [], [], [], [], []
        for t in range(len(frames)):
            found = blobs(labels[t], index, min_area)
            counts.append(len(found))
            if not found:
                centres.append(None)
                areas.append(0.0)
                bottoms.append(None)
                boxes.append(None)
                continue
            best = max(found, key=lambda b: b.area)
            boxes.append(best.box)
            centres.append(best.centre)
            areas.append(best.area)
            bottoms.append(best.bottom)
            fill, top = refine_mask(frames[t], best).shape_features()
            if best.box[0] > 0 and best.box[1] > 0 and best.box[0] + best.box[2] < w and best.area >= 2 * min_area:
                shapes.append(classify_shape(fill, top))
        tracks[colour] = Track(colour, centres, areas, counts, bottoms, shapes, boxes)
    return tracks


def present_colours(frames: np.ndarray, min_share: float = 0.5) -> list[str]:
    """Object colours with a blob in at least `min_share` of the frames."""
    tracks = track_colours(frames)
    return [c for c, t in tracks.items() if t.visible.mean() >= min_share]
