"""Scene vocabulary and the seeded scene sampler, with the held-out compositions of the test split.

A scene is everything needed to simulate, render and caption one clip: the room (in metres), the
objects (shape, colour, size, material, motion and initial state) and the look and sound of the
surroundings. It is drawn from `numpy.random.default_rng([seed, split])`, so (seed, split) fixes it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

GRAVITY = 9.81  # m/s^2
ROOM_HEIGHT = 2.0  # metres from floor to ceiling; the room's width follows the frame's aspect ratio
FLOOR_FRACTION = 0.125  # share of the frame's height drawn as floor, below the room
WALL_FRACTION = 0.03  # share of the frame's width drawn as each side wall

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 135, 25),
    "yellow": (240, 215, 35),
    "green": (45, 175, 60),
    "cyan": (35, 200, 215),
    "blue": (40, 75, 220),
    "purple": (135, 55, 200),
    "pink": (245, 115, 185),
}
SHAPES = ("ball", "box", "triangle")
SIZES: dict[str, float] = {"small": 0.13, "large": 0.22}  # half of the object's width, metres


@dataclass(frozen=True)
class Material:
    """Contact constants of a material; `sound` names the Foley it makes (see `world.sound`)."""

    restitution: float  # ratio of rebound to impact speed against the floor and walls
    friction: float  # sliding friction coefficient against the floor (balls roll instead)
    density: float  # kg per square metre of the object's 2-D footprint: sets mass for collisions
    sound: str


MATERIALS: dict[str, Material] = {
    "rubber": Material(0.80, 0.70, 1.1, "thud"),
    "wood": Material(0.55, 0.40, 0.7, "knock"),
    "metal": Material(0.45, 0.25, 7.8, "clang"),
    "glass": Material(0.60, 0.20, 2.5, "clink"),
    "plastic": Material(0.65, 0.35, 1.0, "click"),
}
ROLLING_FRICTION = 0.04  # balls on the floor roll: a small deceleration instead of sliding friction
MOTIONS = ("drop", "throw", "slide")  # what the described (first) object does; others may also "rest"
AMBIENCES = ("rain", "wind", "hum")
BACKGROUNDS = ("plain", "gradient", "checker", "stripes", "noise")
# Muted (HSV saturation <= 0.15, objects >= 0.45), so that every object colour stands out, also after
# H.264's chroma subsampling blurs colours into the room.
BACKGROUND_TONES: dict[str, tuple[int, int, int]] = {
    "grey": (120, 120, 124),
    "charcoal": (48, 50, 56),
    "beige": (190, 184, 170),
    "slate": (92, 98, 108),
    "olive": (108, 108, 96),
    "white": (226, 226, 222),
}
SPLITS = {"train": 0, "test": 1}


# The compositions reserved for the test split: one colour for each (shape, motion) pair. Every
# colour, shape and motion, and every pair of them, still occurs in train, so the test split measures
# composition, not unseen words.
HELD_OUT: tuple[tuple[str, str, str], ...] = (
    ("purple", "ball", "drop"),
    ("green", "ball", "throw"),
    ("orange", "ball", "slide"),
    ("cyan", "box", "drop"),
    ("red", "box", "throw"),
    ("pink", "box", "slide"),
    ("yellow", "triangle", "drop"),
    ("blue", "triangle", "throw"),
    ("red", "triangle", "slide"),
)


def is_held_out(colour: str, shape: str, motion: str) -> bool:
    return (colour, shape, motion) in HELD_OUT


@dataclass
class ObjectSpec:
    shape: str
    colour: str
    size: str
    material: str
    motion: str  # drop | throw | slide | rest
    position: tuple[float, float]  # centre, metres (x right, y up from the floor)
    velocity: tuple[float, float]  # m/s

    @property
    def radius(self) -> float:
        """Half the object's width; every shape fills a 2r x 2r box and collides as a disc of radius r."""
        return SIZES[self.size]

    @property
    def mass(self) -> float:
        return MATERIALS[self.material].density * (2 * self.radius) ** 2

    @property
    def direction(self) -> str | None:
        if abs(self.velocity[0]) < 1e-9:
            return None
        return "right" if self.velocity[0] > 0 else "left"


@dataclass
class Scene:
    width_m: float
    height_m: float
    objects: list[ObjectSpec]
    background: str
    background_tone: str
    floor_tone: str
    ambience: str | None
    ambience_level: float
    gravity: float = GRAVITY
    seed: int = 0
    split: str = "train"
    extras: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        objects = []
        for o in self.objects:
            m = MATERIALS[o.material]
            d = asdict(o)
            d.update(
                rgb=list(COLOURS[o.colour]),
                radius_m=o.radius,
                mass_kg=round(o.mass, 6),
                restitution=m.restitution,
                friction=ROLLING_FRICTION if o.shape == "ball" else m.friction,
                direction=o.direction,
                position=list(o.position),
                velocity=list(o.velocity),
            )
            objects.append(d)
        return {
            "room": {"width_m": self.width_m, "height_m": self.height_m},
            "physics": {"gravity": self.gravity, "rolling_friction": ROLLING_FRICTION},
            "objects": objects,
            "background": {"kind": self.background, "tone": self.background_tone, "floor": self.floor_tone},
            "ambience": self.ambience,
            "ambience_level": self.ambience_level,
        }


def room_width(width_px: int, height_px: int) -> float:
    """Room width in metres for a frame size: the room fills the frame above the floor band."""
    ppm = height_px * (1 - FLOOR_FRACTION) / ROOM_HEIGHT
    return width_px / ppm


def sample_scene(seed: int, split: str, width_px: int, height_px: int) -> Scene:
    """Draw a scene from (seed, split); test scenes describe a held-out composition, train ones none."""
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {sorted(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([int(seed), SPLITS[split]])
    width_m = room_width(width_px, height_px)
    wall = WALL_FRACTION * width_m
    n_objects = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    colours = [str(c) for c in rng.permutation(list(COLOURS))[:n_objects]]
    objects: list[ObjectSpec] = []
    for i in range(n_objects):
        for _ in range(100):
            if i == 0 and split == "test":
                colour, shape, motion = HELD_OUT[int(rng.integers(len(HELD_OUT)))]
            else:
                colour = colours[i]
                shape = str(rng.choice(SHAPES))
                motion = str(rng.choice(MOTIONS)) if i == 0 else str(rng.choice((*MOTIONS, "rest")))
                if is_held_out(colour, shape, motion):
                    continue
            if any(o.colour == colour for o in objects):
                continue
            size = str(rng.choice(list(SIZES)))
            spec = _place(rng, shape, colour, size, str(rng.choice(list(MATERIALS))), motion, width_m, wall)
            if spec is not None and all(_apart(spec, o) for o in objects):
                objects.append(spec)
                break
    background = str(rng.choice(BACKGROUNDS))
    tones = [str(t) for t in rng.permutation(list(BACKGROUND_TONES))[:2]]
    ambience = str(rng.choice(AMBIENCES)) if rng.random() < 0.35 else None
    return Scene(
        width_m=width_m,
        height_m=ROOM_HEIGHT,
        objects=objects,
        background=background,
        background_tone=tones[0],
        floor_tone=tones[1],
        ambience=ambience,
        ambience_level=float(rng.uniform(0.02, 0.06)) if ambience else 0.0,
        seed=int(seed),
        split=split,
        extras={"texture_seed": int(rng.integers(2**31))},
    )


def _apart(a: ObjectSpec, b: ObjectSpec) -> bool:
    return math.dist(a.position, b.position) > a.radius + b.radius + 0.05


def _place(rng, shape, colour, size, material, motion, width_m, wall) -> ObjectSpec | None:
    """Initial state for a motion; throws stay below the ceiling and every object starts inside the room."""
    r = SIZES[size]
    lo, hi = wall + r + 0.02, width_m - wall - r - 0.02
    if hi <= lo:
        return None
    side = rng.choice([-1.0, 1.0])
    if motion == "drop":
        x = rng.uniform(lo, hi)
        y = rng.uniform(0.9, ROOM_HEIGHT - r - 0.1)
        v = (0.0, 0.0)
    elif motion == "throw":
        x = lo + rng.uniform(0, 0.3) * (hi - lo) if side > 0 else hi - rng.uniform(0, 0.3) * (hi - lo)
        y = rng.uniform(0.5, 1.2)
        vy_max = math.sqrt(max(0.0, 2 * GRAVITY * (ROOM_HEIGHT - r - 0.05 - y)))
        v = (float(side * rng.uniform(1.2, 3.5)), float(rng.uniform(0.0, min(3.0, vy_max))))
    elif motion == "slide":
        x = lo + rng.uniform(0, 0.25) * (hi - lo) if side > 0 else hi - rng.uniform(0, 0.25) * (hi - lo)
        y = r
        v = (float(side * rng.uniform(1.5, 4.0)), 0.0)
    else:  # rest
        x, y, v = rng.uniform(lo, hi), r, (0.0, 0.0)
    return ObjectSpec(shape, colour, size, material, motion, (float(x), float(y)), v)
