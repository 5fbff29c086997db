"""The simulator against closed-form answers: fall time, restitution, friction, momentum."""

import math

import numpy as np
import pytest

from happyhorse.world import ObjectSpec, Scene, SimulationError, sample_scene, simulate
from happyhorse.world.physics import SETTLE_SPEED
from happyhorse.world.scene import GRAVITY, MATERIALS, ROLLING_FRICTION, WALL_FRACTION

G = GRAVITY


def _scene(*objects, width=4.0):
    return Scene(width, 2.0, list(objects), "plain", "grey", "charcoal", None, 0.0)


def _obj(shape="ball", size="small", material="rubber", motion="drop", position=(1.0, 1.5), velocity=(0.0, 0.0)):
    return ObjectSpec(shape, "red", size, material, motion, position, velocity)


def test_fall_time_and_bounce_heights_follow_restitution():
    ball = _obj(position=(2.0, 1.6))
    r, e = ball.radius, MATERIALS["rubber"].restitution
    traj = simulate(_scene(ball), 8.0)
    floor = [ev for ev in traj.events if ev["kind"] == "bounce" and ev["surface"] == "floor"]
    drop = 1.6 - r
    assert floor[0]["time"] == pytest.approx(math.sqrt(2 * drop / G), abs=1e-12)
    assert floor[0]["speed"] == pytest.approx(math.sqrt(2 * G * drop), abs=1e-12)
    for n, ev in enumerate(floor[:4], start=1):
        rebound = e**n * math.sqrt(2 * G * drop)
        apex_time = ev["time"] + rebound / G
        (pos,), _ = traj.at(np.array([apex_time]))
        assert pos[0, 1] - r == pytest.approx(e ** (2 * n) * drop, abs=1e-9)  # h_n = e^2n h_0
    # bouncing ends once a rebound would be slower than SETTLE_SPEED; then the ball rests
    last = floor[-1]
    assert e * last["speed"] < SETTLE_SPEED and not last["rebound"]
    (pos,), (vel,) = traj.at(np.array([7.99]))
    assert pos[0, 1] == pytest.approx(r) and np.allclose(vel[0], 0)


def test_sliding_box_stops_at_the_friction_distance():
    mu = MATERIALS["wood"].friction
    box = _obj("box", "large", "wood", "slide", position=(1.0, 0.22), velocity=(2.0, 0.0))
    traj = simulate(_scene(box, width=6.0), 2.0)
    stop = [ev for ev in traj.events if ev["kind"] == "stop"]
    assert stop[0]["time"] == pytest.approx(2.0 / (mu * G), abs=1e-12)
    assert stop[0]["position"][0] == pytest.approx(1.0 + 2.0**2 / (2 * mu * G), abs=1e-12)


def test_ball_rolls_with_rolling_friction():
    ball = _obj("ball", "small", "metal", "slide", position=(1.0, 0.13), velocity=(1.0, 0.0))
    traj = simulate(_scene(ball, width=8.0), 3.0)
    (pos,), (vel,) = traj.at(np.array([1.0]))
    assert vel[0, 0] == pytest.approx(1.0 - ROLLING_FRICTION * G * 1.0, abs=1e-12)


def test_wall_hit_reverses_with_restitution():
    e = MATERIALS["glass"].restitution
    ball = _obj("ball", "small", "glass", "throw", position=(3.0, 1.9 - 0.13), velocity=(3.0, 0.0))
    width = 4.0
    traj = simulate(_scene(ball, width=width), 1.0)
    wall = next(ev for ev in traj.events if ev["kind"] == "bounce" and "wall" in ev["surface"])
    x_wall = width - WALL_FRACTION * width - ball.radius
    assert wall["time"] == pytest.approx((x_wall - 3.0) / 3.0, abs=1e-12)
    _, (vel,) = traj.at(np.array([wall["time"] + 1e-6]))
    assert vel[0, 0] == pytest.approx(-e * 3.0, abs=1e-9)


@pytest.mark.parametrize(
    "a,b",
    [
        # two balls meeting in the air, head on and at an angle
        (
            _obj(position=(1.0, 1.5), velocity=(3.0, 1.0)),
            _obj("ball", "large", "metal", position=(3.0, 1.5), velocity=(-2.0, 1.0)),
        ),
        (
            _obj(position=(1.0, 1.2), velocity=(3.0, 2.0)),
            _obj("ball", "large", "wood", position=(3.0, 1.5), velocity=(-2.0, 1.0)),
        ),
        # a box sliding into a resting box, along the floor
        (
            _obj("box", "small", "plastic", "slide", (1.0, 0.13), (3.0, 0.0)),
            _obj("box", "large", "metal", "rest", (2.5, 0.22)),
        ),
    ],
)
def test_collisions_conserve_momentum(a, b):
    traj = simulate(_scene(a, b, width=5.0), 2.0)
    hit = next(ev for ev in traj.events if ev["kind"] == "collision")
    masses = np.array([a.mass, b.mass])[:, None]
    eps = 1e-9
    pos, vel = traj.at(np.array([hit["time"] - eps, hit["time"] + eps]))
    before, after = (masses * vel[0]).sum(0), (masses * vel[1]).sum(0)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert not np.allclose(vel[0], vel[1])  # the collision did change the velocities
    gap = np.linalg.norm(pos[0, 1] - pos[0, 0]) if hit["objects"] else None
    assert gap >= a.radius + b.radius - 1e-6


def test_random_scenes_never_gain_energy_or_interpenetrate():
    for seed in range(150):
        scene = sample_scene(seed, "train", 64, 64)
        try:
            traj = simulate(scene, 2.0)
        except SimulationError:
            continue  # make_clip redraws such scenes
        masses = np.array([o.mass for o in scene.objects])
        radii = np.array([o.radius for o in scene.objects])
        pos, vel = traj.at(np.linspace(0, 2.0, 400))
        energy = (0.5 * masses * (vel**2).sum(-1) + masses * G * pos[..., 1]).sum(-1)
        assert np.all(np.diff(energy) <= 1e-6), seed
        wall = WALL_FRACTION * scene.width_m
        assert np.all(pos[..., 0] >= wall + radii - 1e-6) and np.all(pos[..., 0] <= scene.width_m - wall - radii + 1e-6)
        assert np.all(pos[..., 1] >= radii - 1e-6) and np.all(pos[..., 1] <= scene.height_m - radii + 1e-6)
        for i in range(len(radii)):
            for j in range(i + 1, len(radii)):
                d = np.linalg.norm(pos[:, i] - pos[:, j], axis=-1)
                assert np.all(d >= radii[i] + radii[j] - 1e-6), (seed, i, j)
