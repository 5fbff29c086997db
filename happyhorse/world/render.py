"""Rasterise a simulated scene into uint8 frames.

The room maps to pixels at `ppm` pixels per metre, floor band at the bottom, walls at the sides.
Shapes are drawn from signed distance functions with one pixel of anti-aliasing, so sub-pixel motion
shows as smooth intensity changes (which optical flow, and a model, can follow). Only the pixels in
each object's bounding box are touched, so rendering cost does not grow with the frame size.
"""

from __future__ import annotations

import numpy as np

from .scene import BACKGROUND_TONES, COLOURS, FLOOR_FRACTION, WALL_FRACTION, Scene


class Camera:
    """World metres (x right, y up from the floor) <-> pixel coordinates (column, row)."""

    def __init__(self, width: int, height: int, room_height: float):
        self.width, self.height = width, height
        self.floor_row = height * (1 - FLOOR_FRACTION)  # row of the floor surface
        self.ppm = self.floor_row / room_height

    def to_pixels(self, xy: np.ndarray) -> np.ndarray:
        """[..., 2] metres -> [..., 2] (column, row) pixel coordinates of pixel centres' space."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([xy[..., 0] * self.ppm, self.floor_row - xy[..., 1] * self.ppm], axis=-1)


def background(scene: Scene, width: int, height: int) -> np.ndarray:
    """The static room: wall, floor and side walls, float32 [H, W, 3] in 0..255."""
    rng = np.random.default_rng(scene.extras.get("texture_seed", 0))
    base = np.array(BACKGROUND_TONES[scene.background_tone], dtype=np.float32)
    rows = np.arange(height, dtype=np.float32)[:, None]
    cols = np.arange(width, dtype=np.float32)[None, :]
    scale = height / 16.0
    if scene.background == "plain":
        shade = np.ones((height, width), np.float32)
    elif scene.background == "gradient":
        shade = np.broadcast_to(0.75 + 0.4 * rows / height, (height, width))
    elif scene.background == "checker":
        shade = 0.9 + 0.15 * (((rows // (2 * scale)) + (cols // (2 * scale))) % 2)
    elif scene.background == "stripes":
        shade = np.broadcast_to(0.9 + 0.12 * np.sin(cols / scale * 1.3), (height, width))
    else:  # noise: smooth blotches
        coarse = rng.uniform(0.85, 1.12, size=(5, 5)).astype(np.float32)
        ri = np.minimum((rows / height * 4).astype(int), 4)
        ci = np.minimum((cols / width * 4).astype(int), 4)
        shade = coarse[ri, ci]
    image = np.clip(base[None, None] * np.asarray(shade)[..., None], 0, 255).astype(np.float32)
    floor_row = int(round(height * (1 - FLOOR_FRACTION)))
    floor = np.array(BACKGROUND_TONES[scene.floor_tone], dtype=np.float32) * 0.8
    image[floor_row:] = floor
    image[floor_row : floor_row + max(1, height // 64)] = floor * 0.7  # the floor's edge
    wall = max(1, int(round(WALL_FRACTION * width)))
    image[:floor_row, :wall] *= 0.6
    image[:floor_row, width - wall :] *= 0.6
    return image


def _coverage(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape of half-width r pixels, offsets dx, dy in pixels
    (dy positive upwards)."""
    if shape == "ball":
        sd = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "box":
        sd = np.maximum(np.abs(dx), np.abs(dy)) - r
    else:  # triangle pointing up, base on the bottom of its 2r x 2r box
        sd = np.maximum(-r - dy, (2 * np.abs(dx) + dy - r) / np.sqrt(5.0))
    return np.minimum(np.maximum(0.5 - sd, 0.0), 1.0)


def _paint(obj, dx: np.ndarray, dy: np.ndarray, r) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(colour [..., 3], opacity, coverage) of an object of half-width r pixels at offsets dx, dy (dy up)."""
    highlight, opacity, grain = MATERIAL_LOOK[obj.material]
    shape_cover = _coverage(obj.shape, dx, dy, r)
    alpha = shape_cover * opacity
    # light from the upper left; metal and glass add a specular spot, wood a grain
    shade = 1.0 + 0.18 * np.minimum(np.maximum((dy - dx) / max(r, 1e-6), -1), 1)
    if grain:
        shade = shade * (1 - grain * (np.sin(dy * 6.0 / max(r, 1.0)) > 0.6))
    paint = np.array(COLOURS[obj.colour], dtype=np.float32) * shade[..., None]
    if highlight:
        spot = np.exp(-((dx + 0.35 * r) ** 2 + (dy - 0.35 * r) ** 2) / (0.08 * r * r + 0.3))
        paint = paint + highlight * spot[..., None] * (255 - paint)
    return np.minimum(paint, 255), alpha, shape_cover


REFERENCE_BACKDROP = (200.0, 200.0, 196.0)  # the neutral grey a subject reference stands on
REFERENCE_FILL = 0.3  # a reference's subject is this share of the frame's smaller side from centre to edge


def render_reference(obj, width: int, height: int) -> np.ndarray:
    """The object on its own, large and centred on a neutral backdrop, uint8 [H, W, 3]: a subject
    reference (reference-to-video), not a frame of any clip."""
    r = np.float32(REFERENCE_FILL * min(width, height))
    dx = np.arange(width, dtype=np.float32)[None, :] + 0.5 - width / 2
    dy = height / 2 - (np.arange(height, dtype=np.float32)[:, None] + 0.5)
    paint, alpha, _ = _paint(obj, dx, dy, r)
    image = np.broadcast_to(np.array(REFERENCE_BACKDROP, np.float32), (height, width, 3)).copy()
    image += alpha[..., None] * (paint - image)
    return np.minimum(np.maximum(image + 0.5, 0), 255).astype(np.uint8)


# (highlight strength, opacity, grain) per material. Highlights stay faint and glass nearly opaque, so
# that every object keeps its saturated colour (and its outline) for the colour tracker of `eval`.
MATERIAL_LOOK = {
    "rubber": (0.0, 1.0, 0.0),
    "wood": (0.0, 1.0, 0.18),
    "metal": (0.35, 1.0, 0.0),
    "glass": (0.3, 0.85, 0.0),
    "plastic": (0.15, 1.0, 0.0),
}


def render(
    scene: Scene,
    positions: np.ndarray,
    width: int,
    height: int,
    coverage: bool = False,
    backdrop: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Frames uint8 [T, H, W, 3] for object centres `positions` [T, N, 2] in metres.

    Each object is shaded in a fixed-size window around it, for all frames at once (T, S, S), then
    blended into a canvas padded by S on every side so windows never need clipping. With `coverage`,
    also the share of each pixel that objects cover, float32 [T, H, W] in [0, 1] (the exact object
    mask: training can weight its loss by it, since objects are all a prompt is about).
    `backdrop` (float32 [T, H, W, 3]) replaces the static room behind the objects (talking faces on the wall).
    """
    cam = Camera(width, height, scene.height_m)
    n_frames = positions.shape[0]
    base = background(scene, width, height) if backdrop is None else backdrop
    centres = cam.to_pixels(positions).astype(np.float32)  # (T, N, 2) column, row
    pad = int(max((o.radius for o in scene.objects), default=0) * cam.ppm * 2 + 4)
    canvas = np.zeros((n_frames, height + 2 * pad, width + 2 * pad, 3), np.float32)
    canvas[:, pad : pad + height, pad : pad + width] = base
    covered = np.zeros(canvas.shape[:3], np.float32) if coverage else None
    grid = np.arange(pad, dtype=np.float32)
    for k, obj in enumerate(scene.objects):
        r = np.float32(obj.radius * cam.ppm)
        size = int(2 * r + 4)
        cx, cy = centres[:, k, 0], centres[:, k, 1]
        # window origin per frame, clamped so the window stays on the padded canvas
        c0 = np.clip(np.floor(cx - r - 1).astype(int), -pad, width + pad - size)
        r0 = np.clip(np.floor(cy - r - 1).astype(int), -pad, height + pad - size)
        dx = (c0[:, None, None] + grid[None, None, :size] + 0.5) - cx[:, None, None]  # (T, 1, S)
        dy = cy[:, None, None] - (r0[:, None, None] + grid[None, :size, None] + 0.5)  # (T, S, 1)
        paint, alpha, shape_cover = _paint(obj, dx, dy, r)
        alpha = alpha[..., None]
        for t in range(n_frames):
            region = canvas[t, r0[t] + pad : r0[t] + pad + size, c0[t] + pad : c0[t] + pad + size]
            region += alpha[t] * (paint[t] - region)
            if covered is not None:
                cell = covered[t, r0[t] + pad : r0[t] + pad + size, c0[t] + pad : c0[t] + pad + size]
                np.maximum(cell, shape_cover[t], out=cell)
    frames = canvas[:, pad : pad + height, pad : pad + width] + 0.5
    frames = np.minimum(np.maximum(frames, 0), 255).astype(np.uint8)
    if covered is None:
        return frames
    return frames, np.ascontiguousarray(covered[:, pad : pad + height, pad : pad + width])
