"""Event-driven 2-D rigid-body physics with exact impact times.

Between events every body moves with constant acceleration (gravity in the air, friction on the floor,
nothing at rest), so each next event -- floor, wall or ceiling hit, a slide stopping, two bodies
touching -- is the smallest root of a polynomial of degree <= 4, solved in closed form or by
`numpy.roots`. Impact times are therefore exact to floating point, not to a time step, which is what
lets the sound of an impact start on the right audio sample. Shapes fill a 2r x 2r box: floor, walls
and ceiling see that box; two bodies collide as discs of radius r, or along x when both are on the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .scene import MATERIALS, ROLLING_FRICTION, WALL_FRACTION, Scene

SETTLE_SPEED = 1.2  # m/s: a floor impact whose rebound would be slower than this ends the bouncing
# (1.2 m/s rises 7 cm and flies 0.24 s: the smallest bounce a 12 fps camera can still show)
AUDIBLE_SPEED = 0.3  # m/s: slower impacts make no sound
RESTING_CONTACT_SPEED = 0.15  # m/s: a slower hit involving a body in the air means one rests on another
MAX_EVENTS = 200
_EPS = 1e-10


class SimulationError(RuntimeError):
    """The scene did not settle into a well-posed simulation (e.g. endless contacts); resample it."""


@dataclass
class Body:
    x: float
    y: float
    vx: float
    vy: float
    r: float
    restitution: float
    friction: float  # floor deceleration / g while moving on the floor
    mass: float
    mode: str  # air | floor | rest

    def acceleration(self, g: float) -> tuple[float, float]:
        if self.mode == "air":
            return 0.0, -g
        if self.mode == "floor" and self.vx != 0.0:
            return -math.copysign(self.friction * g, self.vx), 0.0
        return 0.0, 0.0

    def advance(self, dt: float, g: float) -> None:
        ax, ay = self.acceleration(g)
        self.x += self.vx * dt + 0.5 * ax * dt * dt
        self.y += self.vy * dt + 0.5 * ay * dt * dt
        self.vx += ax * dt
        self.vy += ay * dt


@dataclass
class Trajectory:
    """Piecewise constant-acceleration motion of every body, plus the events between pieces.

    times: [S] start of each piece (s); states: [S, N, 6] with (x, y, vx, vy, ax, ay) per body, SI units.
    """

    times: np.ndarray
    states: np.ndarray
    events: list[dict] = field(default_factory=list)

    def at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities [len(t), N, 2] at times t (seconds)."""
        t = np.asarray(t, dtype=np.float64)
        idx = np.searchsorted(self.times, t, side="right") - 1
        s = self.states[np.clip(idx, 0, None)]  # (T, N, 6)
        dt = (t - self.times[np.clip(idx, 0, None)])[:, None, None]
        pos = s[..., 0:2] + s[..., 2:4] * dt + 0.5 * s[..., 4:6] * dt * dt
        vel = s[..., 2:4] + s[..., 4:6] * dt
        return pos, vel


def bodies_from_scene(scene: Scene) -> list[Body]:
    bodies = []
    for o in scene.objects:
        m = MATERIALS[o.material]
        on_floor = abs(o.position[1] - o.radius) < 1e-9 and o.velocity[1] == 0.0
        mode = "air" if not on_floor else ("floor" if o.velocity[0] != 0.0 else "rest")
        bodies.append(
            Body(
                x=o.position[0],
                y=o.position[1],
                vx=o.velocity[0],
                vy=o.velocity[1],
                r=o.radius,
                restitution=m.restitution,
                friction=ROLLING_FRICTION if o.shape == "ball" else m.friction,
                mass=o.mass,
                mode=mode,
            )
        )
    return bodies


def simulate(scene: Scene, duration: float) -> Trajectory:
    """Run the scene for `duration` seconds and return its exact trajectory and impact events."""
    g = scene.gravity
    wall = WALL_FRACTION * scene.width_m
    room = (wall, scene.width_m - wall, scene.height_m)  # left wall, right wall, ceiling (metres)
    bodies = bodies_from_scene(scene)
    t = 0.0
    times, states, events = [], [], []
    while True:
        times.append(t)
        states.append([(b.x, b.y, b.vx, b.vy, *b.acceleration(g)) for b in bodies])
        dt, event = _next_event(bodies, room, g, duration - t)
        if event is None:
            break
        for b in bodies:
            b.advance(dt, g)
        t += dt
        events.append(_resolve(event, bodies, t, room))
        if len(events) > MAX_EVENTS:
            raise SimulationError(f"more than {MAX_EVENTS} events in {duration} s")
    return Trajectory(np.asarray(times), np.asarray(states, dtype=np.float64), events)


# ------------------------------------------------------------------------------------ event search


def _smallest_root(coefficients: list[float], horizon: float) -> float | None:
    """Smallest real root in (0, horizon] of a polynomial given highest power first."""
    c = np.trim_zeros(np.asarray(coefficients, dtype=np.float64), "f")
    if c.size < 2:
        return None
    scale = np.abs(c).max()
    roots = np.roots(c / scale)
    real = roots.real[(np.abs(roots.imag) <= 1e-7 * (1 + np.abs(roots.real))) & (roots.real > _EPS)]
    real = real[real <= horizon]
    return float(real.min()) if real.size else None


def _quadratic_first_root(a: float, b: float, c: float, horizon: float) -> float | None:
    """Smallest root in (0, horizon] of a*t^2 + b*t + c (closed form; a may be 0)."""
    if abs(a) < 1e-15:
        if abs(b) < 1e-15:
            return None
        t = -c / b
        return t if _EPS < t <= horizon else None
    disc = b * b - 4 * a * c
    if disc < 0:
        return None
    sq = math.sqrt(disc)
    q = -0.5 * (b + math.copysign(sq, b))  # the numerically stable pair of roots
    roots = sorted(x for x in (q / a, c / q if q != 0 else math.inf) if _EPS < x <= horizon)
    return roots[0] if roots else None


def _own_events(i: int, b: Body, room, g: float, horizon: float):
    """Candidate (dt, event) of one body with the room: floor, ceiling, walls, stopping."""
    left, right, ceiling = room
    out = []
    if b.mode == "air":
        t = _quadratic_first_root(-0.5 * g, b.vy, b.y - b.r, horizon)
        if t is None and b.y - b.r <= 1e-12 and b.vy <= 0:
            t = _EPS
        if t is not None:
            out.append((t, ("floor", i)))
        t = _quadratic_first_root(-0.5 * g, b.vy, b.y - (ceiling - b.r), horizon) if b.vy > 0 else None
        if t is not None:
            out.append((t, ("ceiling", i)))
    ax, _ = b.acceleration(g)
    if b.vx < 0:
        t = _quadratic_first_root(0.5 * ax, b.vx, b.x - (left + b.r), horizon)
    elif b.vx > 0:
        t = _quadratic_first_root(0.5 * ax, b.vx, b.x - (right - b.r), horizon)
    else:
        t = None
    if t is not None and (ax == 0.0 or t < abs(b.vx / ax)):
        out.append((t, ("wall", i)))
    if b.mode == "floor" and ax != 0.0:
        t = abs(b.vx / ax)
        if t <= horizon:
            out.append((t, ("stop", i)))
    return out


def _pair_event(i: int, j: int, a: Body, b: Body, g: float, horizon: float):
    """First contact of bodies a and b within the horizon, or None."""
    ra, rb = a.acceleration(g), b.acceleration(g)
    px, py = b.x - a.x, b.y - a.y
    vx, vy = b.vx - a.vx, b.vy - a.vy
    ax, ay = 0.5 * (rb[0] - ra[0]), 0.5 * (rb[1] - ra[1])
    radius = a.r + b.r
    if a.mode != "air" and b.mode != "air":  # both on the floor: boxes meet along x
        if abs(py) > radius or (px * vx >= 0 and px * ax >= 0):
            return None
        target = math.copysign(radius, px)
        t = _quadratic_first_root(ax, vx, px - target, horizon)
        return (t, ("pair", i, j)) if t is not None else None
    if px * vx + py * vy >= 0 and ax == 0 and ay == 0:
        return None  # separating with no relative acceleration: never meet
    # |p + v t + a t^2|^2 = radius^2, a quartic in t
    coefficients = [
        ax * ax + ay * ay,
        2 * (ax * vx + ay * vy),
        vx * vx + vy * vy + 2 * (ax * px + ay * py),
        2 * (px * vx + py * vy),
        px * px + py * py - radius * radius,
    ]
    t = _smallest_root(coefficients, horizon)
    if t is None:
        return None
    dx, dy = px + vx * t + ax * t * t, py + vy * t + ay * t * t
    dvx, dvy = vx + 2 * ax * t, vy + 2 * ay * t
    return (t, ("pair", i, j)) if dx * dvx + dy * dvy < 0 else None


def _next_event(bodies: list[Body], room, g: float, horizon: float):
    best: tuple[float, tuple | None] = (horizon, None)
    for i, b in enumerate(bodies):
        for cand in _own_events(i, b, room, g, best[0]):
            if cand[0] < best[0]:
                best = cand
    for i in range(len(bodies)):
        for j in range(i + 1, len(bodies)):
            cand = _pair_event(i, j, bodies[i], bodies[j], g, best[0])
            if cand is not None and cand[0] < best[0]:
                best = cand
    return best


# ------------------------------------------------------------------------------------ responses


def _resolve(event: tuple, bodies: list[Body], t: float, room) -> dict:
    """Apply an event's impulse and return its ground-truth record."""
    kind = event[0]
    if kind == "pair":
        return _collide(event[1], event[2], bodies, t)
    i = event[1]
    b = bodies[i]
    record = {"time": t, "kind": kind, "objects": [i], "position": [b.x, b.y]}
    if kind == "floor":
        speed = -b.vy
        b.y = b.r
        rebound = b.restitution * speed
        if rebound < SETTLE_SPEED:
            b.vy = 0.0
            b.mode = "floor" if b.vx != 0.0 else "rest"
        else:
            b.vy = rebound
        record.update(kind="bounce", surface="floor", rebound=rebound >= SETTLE_SPEED)
    elif kind == "ceiling":
        speed = b.vy
        b.y = room[2] - b.r
        b.vy = -b.restitution * speed
        record.update(kind="bounce", surface="ceiling", rebound=True)
    elif kind == "wall":
        speed = abs(b.vx)
        b.x = room[0] + b.r if b.vx < 0 else room[1] - b.r
        b.vx = -b.restitution * b.vx
        if b.mode == "floor" and abs(b.vx) < 1e-6:
            b.vx, b.mode = 0.0, "rest"
        record.update(kind="bounce", surface="left wall" if b.x < room[1] / 2 else "right wall", rebound=True)
    else:  # stop
        speed = 0.0
        b.vx, b.mode = 0.0, "rest"
    record["speed"] = speed
    record["audible"] = kind != "stop" and speed >= AUDIBLE_SPEED
    return record


def _collide(i: int, j: int, bodies: list[Body], t: float) -> dict:
    """Impulse along the contact normal with restitution sqrt(e_a * e_b): the bodies leave at e times
    their approach speed, conserving momentum (all of it in the air; along x against the floor)."""
    a, b = bodies[i], bodies[j]
    if a.mode != "air" and b.mode != "air":
        nx, ny = math.copysign(1.0, b.x - a.x), 0.0
    else:
        d = math.hypot(b.x - a.x, b.y - a.y)
        nx, ny = (b.x - a.x) / d, (b.y - a.y) / d
    approach = (a.vx - b.vx) * nx + (a.vy - b.vy) * ny
    if approach < RESTING_CONTACT_SPEED and "air" in (a.mode, b.mode):
        # stacking needs a contact solver, which this event-driven simulator does not have
        raise SimulationError(f"bodies {i} and {j} come to rest on each other at t = {t:.3f} s")
    e = math.sqrt(a.restitution * b.restitution)
    # A body on the floor pushed down by the impulse can only move along x: the floor takes the rest,
    # so its inverse mass along the normal is nx^2 / m instead of 1 / m.
    a_pinned = a.mode != "air" and ny > 0
    b_pinned = b.mode != "air" and ny < 0
    w_a = (nx * nx if a_pinned else 1.0) / a.mass
    w_b = (nx * nx if b_pinned else 1.0) / b.mass
    impulse = (1 + e) * approach / (w_a + w_b)
    a.vx -= impulse / a.mass * nx
    b.vx += impulse / b.mass * nx
    if not a_pinned:
        a.vy -= impulse / a.mass * ny
    if not b_pinned:
        b.vy += impulse / b.mass * ny
    for body in (a, b):
        if body.mode != "air":
            if body.vy > 1e-9:
                body.mode = "air"
            else:
                body.vy = 0.0
                body.mode = "floor" if abs(body.vx) > 1e-9 else "rest"
                if body.mode == "rest":
                    body.vx = 0.0
    contact = [(a.x * b.r + b.x * a.r) / (a.r + b.r), (a.y * b.r + b.y * a.r) / (a.r + b.r)]
    return {
        "time": t,
        "kind": "collision",
        "objects": [i, j],
        "position": contact,
        "speed": approach,
        "audible": approach >= AUDIBLE_SPEED,
    }
