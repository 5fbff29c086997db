"""Impact Foley and ambience, synthesised sample-exactly from the simulation's events.

An impact is modal synthesis: a few exponentially decaying partials whose frequencies and decay
times depend on the material (a rubber thud is low and short, a metal clang high and long) and on
the object's size, plus a short noise burst for the contact itself. Each impact's waveform is
evaluated at the true time since the collision, `n / sr - t`, from the first sample at or after the
event, so its onset is exact to one audio sample whatever the frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .scene import MATERIALS, Scene


@dataclass(frozen=True)
class Timbre:
    partials: tuple[float, ...]  # Hz, for a large object; small ones sound higher
    decay: float  # seconds to fall by 1/e
    click: float  # weight of the contact noise burst against the partials


TIMBRES: dict[str, Timbre] = {
    "thud": Timbre((95.0, 210.0, 340.0), 0.035, 0.6),  # rubber
    "knock": Timbre((380.0, 1050.0, 2250.0), 0.045, 0.4),  # wood
    "clang": Timbre((820.0, 2170.0, 3810.0, 5630.0), 0.30, 0.2),  # metal
    "clink": Timbre((1750.0, 3950.0, 6100.0), 0.14, 0.15),  # glass
    "click": Timbre((690.0, 1720.0, 3350.0), 0.05, 0.35),  # plastic
}
SMALL_PITCH = 1.45  # small objects ring higher than large ones by this ratio
FULL_SCALE_SPEED = 7.0  # m/s: an impact this hard reaches the loudest level


def impact_gain(speed: float) -> float:
    """Peak level of an impact: rises with impact speed (louder for harder hits), saturating."""
    return 0.85 * min(1.0, speed / FULL_SCALE_SPEED) ** 0.7


def impact(
    time: float, speed: float, material: str, small: bool, sample_rate: int, rng: np.random.Generator
) -> tuple[int, np.ndarray]:
    """One impact sound: (first sample index, mono waveform) with the first sample at ceil(time * sr).

    Each partial A e^(-tau/d) sin(2 pi f tau + phi) is produced by a two-pole resonator (`lfilter`),
    whose impulse response is exactly that damped sinusoid sampled at tau = delta + n / sr.
    """
    timbre = TIMBRES[MATERIALS[material].sound]
    start = int(np.ceil(time * sample_rate - 1e-9))
    delta = start / sample_rate - time  # 0 <= delta < 1 / sr: the first sample's time after impact
    length = int(min(7.0 * timbre.decay, 0.8) * sample_rate)
    pitch = SMALL_PITCH if small else 1.0
    pulse = np.zeros(length)
    pulse[0] = 1.0
    wave = np.zeros(length)
    for k, f in enumerate(timbre.partials):
        f = f * pitch * (1 + 0.02 * rng.standard_normal())
        phase = rng.uniform(0.3, 2.8)
        if f >= 0.45 * sample_rate:
            continue
        decay = timbre.decay / (1 + 0.5 * k)
        w, r = 2 * np.pi * f / sample_rate, np.exp(-1.0 / (decay * sample_rate))
        phi = 2 * np.pi * f * delta + phase
        gain = np.exp(-delta / decay) / (k + 1)
        n = min(length, int(7.0 * decay * sample_rate))  # this partial has faded to -60 dB by then
        b, a = [np.sin(phi), r * np.sin(w - phi)], [1.0, -2 * r * np.cos(w), r * r]
        wave[:n] += gain * lfilter(b, a, pulse[:n])
    n_burst = min(length, int(0.03 * sample_rate))
    tau = delta + np.arange(n_burst) / sample_rate
    burst = rng.standard_normal(n_burst) * np.exp(-tau / 0.003)
    wave *= (1 - timbre.click) / max(1e-9, np.abs(wave).max())
    wave[:n_burst] += timbre.click * burst / 3.0
    return start, (impact_gain(speed) * wave).astype(np.float32)


def ambience(kind: str, level: float, n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A steady background sound named in the caption: rain, wind or hum, at RMS ~ level."""
    t = np.arange(n) / sample_rate
    if kind == "rain":  # bright hiss with random droplets
        noise = lfilter([1, -0.9], [1], rng.standard_normal(n))
        drops = np.zeros(n)
        hits = rng.integers(0, n, size=int(40 * n / sample_rate))
        drops[hits] = rng.uniform(0.5, 2.0, hits.size)
        noise += lfilter([1], [1, -0.7], drops) * 3
    elif kind == "wind":  # low rumble swelling slowly
        noise = lfilter([1], [1, -0.995], rng.standard_normal(n))
        noise -= noise.mean()
        noise *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t + rng.uniform(0, 6.3))
    elif kind == "hum":  # mains hum and its harmonics
        base = rng.choice([50.0, 60.0])
        noise = sum(np.sin(2 * np.pi * base * h * t) / h for h in (1, 2, 3, 4))
    else:
        raise ValueError(f"ambience: must be one of rain, wind, hum; got {kind!r}")
    rms = np.sqrt(np.mean(noise**2)) + 1e-12
    return (level * noise / rms).astype(np.float32)


def pan_gains(x: float, width: float) -> tuple[float, float]:
    """Equal-power left/right gains for a sound at horizontal position x of a room `width` wide."""
    angle = np.clip(x / width, 0.0, 1.0) * np.pi / 2
    return float(np.cos(angle)), float(np.sin(angle))


def soundtrack(
    scene: Scene,
    events: list[dict],
    seconds: float,
    sample_rate: int,
    channels: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[dict]]:
    """The clip's audio [channels, N] and, per audible event, where its sound starts (sample index)."""
    n = int(round(seconds * sample_rate))
    audio = np.zeros((channels, n), dtype=np.float32)
    onsets = []
    for k, ev in enumerate(events):
        if not ev["audible"]:
            continue
        objects = [scene.objects[i] for i in ev["objects"]]
        share = 1.0 / np.sqrt(len(objects))  # two bodies ringing together: same total power
        for o in objects:
            start, wave = impact(ev["time"], ev["speed"], o.material, o.size == "small", sample_rate, rng)
            if start >= n:
                continue
            wave = wave[: n - start] * share
            gains = (1.0,) if channels == 1 else pan_gains(ev["position"][0], scene.width_m)
            for c, gain in enumerate(gains):
                audio[c, start : start + wave.size] += gain * wave
        onsets.append({"event": k, "sample": int(np.ceil(ev["time"] * sample_rate - 1e-9))})
    if scene.ambience:
        audio += ambience(scene.ambience, scene.ambience_level, n, sample_rate, rng)[None]
    peak = np.abs(audio).max()
    if peak > 0.98:  # keep hard hits unclipped: scale the whole clip, which moves no onset
        audio *= 0.98 / peak
    return audio, onsets
