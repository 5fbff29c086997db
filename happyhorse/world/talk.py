"""Talking characters: procedural faces that say a line, with the mouth driven by eSpeak's phoneme times.

A face is a coloured head (round, square or oval) with two eyes that blink and a dark mouth whose
height follows the speech's visemes, and a little head sway. Every quantity the picture shows is kept
as ground truth: per frame the mouth opening of the speaker, per phoneme and word its time in the clip.

The test split holds out lines (`lines.split_lines`) and one voice per language (`held_out_voice`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .caption import with_article
from .lines import split_lines
from .scene import COLOURS
from .speech import LANGUAGES, VOICES, Speech, Voice, speak

FACE_SHAPES = ("round", "square", "oval")
FACE_WORDS = {"round": ("round",), "square": ("square", "boxy"), "oval": ("oval", "long")}
EYE_WHITE = np.array((240.0, 240.0, 236.0), np.float32)
PUPIL = np.array((24.0, 22.0, 30.0), np.float32)
MOUTH = np.array((38.0, 30.0, 34.0), np.float32)  # dark and grey: never taken for a face colour
BLINK_S = 0.16  # a blink closes and opens the eyes in this long
COARTICULATION_S = 0.035  # the mouth moves smoothly between visemes: Gaussian of this width (seconds)
SPEECH_PEAK = 0.7  # a line is scaled to this peak before mixing
MARGIN_S = 0.1  # a line starts and ends at least this far from the clip's ends


def held_out_voice(language: str) -> str:
    """The one voice of each language that only the test split uses (language x voice pairs held out)."""
    names = list(VOICES)
    return names[list(LANGUAGES).index(language) % len(names)]


def split_voices(language: str, split: str) -> list[str]:
    held = held_out_voice(language)
    return [held] if split == "test" else [v for v in VOICES if v != held]


def viseme_opening(symbol: str) -> float:
    """How far the mouth opens (0 closed .. 1 wide) for an eSpeak phoneme mnemonic.

    Open vowels open widest, mid and rounded vowels less, close vowels least; bilabials (p, b, m)
    close the mouth, labiodentals (f, v) nearly; pauses close it; other consonants leave it a little open.
    """
    s = symbol.lstrip("',%=")
    if not s or s[0] == "_":
        return 0.0
    c = s[0]
    if c in "pbm":
        return 0.0
    if c in "fv":
        return 0.12
    if c in "aA&V0":
        return 1.0
    if c in "eE3":
        return 0.7
    if c in "oO":
        return 0.75
    if c == "@":
        return 0.5
    if c in "uUyY":
        return 0.45
    if c in "iI":
        return 0.4
    return 0.25


def mouth_curve(speech: Speech, start: float, times: np.ndarray, rate: float = 200.0) -> np.ndarray:
    """Mouth opening in [0, 1] at `times` (seconds in the clip) for `speech` starting at `start`."""
    end = float(max(times.max(), start + speech.seconds)) + 1.0
    grid = np.arange(0.0, end, 1.0 / rate)
    target = np.zeros_like(grid)
    for symbol, t0, t1 in speech.phonemes:
        target[(grid >= start + t0) & (grid < start + t1)] = viseme_opening(symbol)
    smooth = gaussian_filter1d(target, COARTICULATION_S * rate, mode="constant")
    return np.clip(np.interp(times, grid, smooth), 0.0, 1.0)


@dataclass
class Face:
    colour: str
    shape: str  # round | square | oval
    centre: tuple[float, float]  # pixels (column, row) at rest
    radius: float  # pixels: half the head's width
    blinks: tuple[float, ...]  # seconds at which a blink starts
    sway: tuple[float, float, float]  # amplitude (pixels), frequency (Hz), phase (rad) of the head's sway

    def offset(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        amp, freq, phase = self.sway
        return amp * np.sin(2 * np.pi * freq * t + phase), 0.5 * amp * np.sin(4 * np.pi * freq * t + phase)

    def eyes_open(self, t: np.ndarray) -> np.ndarray:
        shut = np.zeros_like(t)
        for b in self.blinks:
            u = (t - b) / BLINK_S
            shut = np.maximum(shut, np.clip(1 - np.abs(2 * u - 1), 0, 1) * ((u >= 0) & (u <= 1)))
        return 1 - shut


@dataclass
class Talk:
    """Who is on screen and what one of them says, when, in which language and voice."""

    faces: list[Face]
    speaker: int
    line: str
    language: str
    voice: str
    start: float  # seconds into the clip at which the line starts
    speech: Speech | None = field(default=None, repr=False)


def sample_talk(
    rng: np.random.Generator,
    split: str,
    width: int,
    height: int,
    seconds: float,
    sample_rate: int,
    *,
    corner: bool = False,
    avoid_colours: tuple[str, ...] = (),
) -> Talk:
    """Draw a talk scene: one or two faces (one in a corner of the frame with `corner`, for mixed scenes),
    a line in a language, a voice, blinks and sways; the line is spoken and placed inside the clip."""
    n_faces = 1 if corner else int(rng.choice([1, 2], p=[0.7, 0.3]))
    colours = [str(c) for c in rng.permutation([c for c in COLOURS if c not in avoid_colours])[:n_faces]]
    if corner:
        side = float(rng.choice([0.25, 0.75]))
        layout = [((side * width, 0.3 * height), 0.17 * height)]
    elif n_faces == 1:
        layout = [((0.5 * width, 0.45 * height), 0.3 * height)]
    else:
        layout = [((0.28 * width, 0.45 * height), 0.2 * height), ((0.72 * width, 0.45 * height), 0.2 * height)]
    faces = []
    for colour, (centre, radius) in zip(colours, layout, strict=True):
        n_blinks = int(rng.integers(0, 3))
        faces.append(
            Face(
                colour=colour,
                shape=str(rng.choice(FACE_SHAPES)),
                centre=(float(centre[0]), float(centre[1])),
                radius=float(radius),
                blinks=tuple(sorted(float(b) for b in rng.uniform(0, max(seconds - BLINK_S, 0.01), n_blinks))),
                sway=(float(rng.uniform(0.0, 0.04) * radius), float(rng.uniform(0.3, 0.9)), float(rng.uniform(0, 6.3))),
            )
        )
    speaker = int(rng.integers(n_faces))
    language = str(rng.choice(list(LANGUAGES)))
    voice_name = str(rng.choice(split_voices(language, split)))
    lines = list(split_lines(language, split))
    for line in rng.permutation(lines):
        speech = speak(str(line), language, voice_name, sample_rate)
        if speech.seconds <= seconds - 2 * MARGIN_S:
            break
    else:  # every line is too long for this clip: the voice speaks faster to fit
        v = VOICES[voice_name]
        fast = Voice(v.name, v.variant, v.pitch, int(v.rate * speech.seconds / (seconds - 2 * MARGIN_S)) + 10)
        speech = speak(str(line), language, fast, sample_rate)
    start = float(rng.uniform(MARGIN_S, max(MARGIN_S, seconds - MARGIN_S - speech.seconds)))
    return Talk(faces, speaker, str(line), language, voice_name, start, speech)


def _face_sd(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a head of half-width r."""
    if shape == "round":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        corner = 0.3 * r
        qx, qy = np.abs(dx) - (r - corner), np.abs(dy) - (r - corner)
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0) - corner
    # oval: an ellipse 0.85 r wide and 1.15 r tall (distance approximated by scaling)
    ax, ay = 0.85 * r, 1.15 * r
    return (np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2) - 1) * min(ax, ay)


def _ellipse_cover(dx: np.ndarray, dy: np.ndarray, ax: float, ay: float) -> np.ndarray:
    """Anti-aliased coverage of an axis-aligned ellipse with half-axes ax, ay (pixels); a shut eye or mouth
    (an axis near 0) still shows as a line a few tenths of a pixel thick."""
    ax, ay = max(ax, 0.3), max(ay, 0.3)
    k = np.sqrt((dx / ax) ** 2 + (dy / ay) ** 2)
    grad = np.sqrt((dx / ax**2) ** 2 + (dy / ay**2) ** 2)
    sd = (k - 1) * k / np.maximum(grad, 1e-6)  # first-order distance to the ellipse, exact on its axes
    return np.clip(0.5 - sd, 0.0, 1.0)


def draw_faces(frames: np.ndarray, talk: Talk, times: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """Paint the faces into float32 frames [T, H, W, 3] (in place); `opening` is the speaker's per frame.
    Returns the share of each pixel the heads cover, float32 [T, H, W]."""
    n_frames, height, width = frames.shape[:3]
    covered = np.zeros((n_frames, height, width), np.float32)
    for i, face in enumerate(talk.faces):
        r = face.radius
        ox, oy = face.offset(times)
        eyes = face.eyes_open(times)
        mouth = opening if i == talk.speaker else np.zeros(n_frames)
        half = int(math.ceil(1.2 * r)) + 2
        for t in range(n_frames):
            cx, cy = face.centre[0] + ox[t], face.centre[1] + oy[t]
            c0, c1 = max(0, int(cx) - half), min(width, int(cx) + half + 1)
            r0, r1 = max(0, int(cy) - half), min(height, int(cy) + half + 1)
            dx = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx
            dy = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy  # downwards
            region = frames[t, r0:r1, c0:c1]
            head = np.clip(0.5 - _face_sd(face.shape, dx, dy, r), 0, 1)[..., None]
            shade = (1.0 + 0.12 * np.clip(-(dx + dy) / r, -1, 1))[..., None]
            region += head * (np.array(COLOURS[face.colour], np.float32) * shade - region)
            np.maximum(covered[t, r0:r1, c0:c1], head[..., 0], out=covered[t, r0:r1, c0:c1])
            for side in (-1, 1):
                ex, ey = dx - side * 0.36 * r, dy + 0.22 * r
                white = _ellipse_cover(ex, ey, 0.17 * r, 0.14 * r * eyes[t])[..., None]
                region += white * (EYE_WHITE - region)
                pupil = _ellipse_cover(ex, ey, 0.08 * r, 0.08 * r * eyes[t])[..., None]
                region += pupil * (PUPIL - region)
            lips = _ellipse_cover(dx, dy - 0.42 * r, 0.34 * r, (0.05 + 0.25 * mouth[t]) * r)[..., None]
            region += lips * (MOUTH - region)
    return covered


def render_face_reference(face: Face, width: int, height: int, backdrop: tuple[float, float, float]) -> np.ndarray:
    """The face on its own, centred, eyes open, mouth at rest, on `backdrop`: a subject reference, uint8."""
    from .render import REFERENCE_FILL

    alone = Face(face.colour, face.shape, (width / 2, height / 2), REFERENCE_FILL * min(width, height), (), (0, 0, 0))
    image = np.broadcast_to(np.array(backdrop, np.float32), (1, height, width, 3)).copy()
    draw_faces(image, Talk([alone], 0, "", "en", "", 0.0), np.zeros(1), np.zeros(1))
    return np.minimum(np.maximum(image[0] + 0.5, 0), 255).astype(np.uint8)


def talk_caption(talk: Talk, rng: np.random.Generator) -> list[str]:
    """Three phrasings: each quotes the line in its own script, names the language and the speaker."""
    lang = LANGUAGES[talk.language].name
    words = [with_article(f"{rng.choice(FACE_WORDS[f.shape])} {f.colour}") for f in talk.faces]
    line, who = talk.line, words[talk.speaker]
    if len(talk.faces) == 1:
        return [
            f'{who.capitalize()} face says "{line}" in {lang}.',
            f'In {lang}, {who} face says "{line}" in a {talk.voice} voice.',
            f'{who.capitalize()} face speaks {lang}: "{line}".',
        ]
    pair = f"{words[0].capitalize()} face and {words[1]} face"
    colour = talk.faces[talk.speaker].colour
    return [
        f'{pair}; the {colour} one says "{line}" in {lang}.',
        f'{pair}: the {colour} face says "{line}" in {lang}.',
        f'{pair}; the {colour} one speaks {lang}: "{line}".',
    ]


def talk_record(talk: Talk, start_sample: int, times: np.ndarray, opening: np.ndarray) -> dict:
    """The sidecar's ground truth of the talk: who, what, when (clip seconds), per-frame mouth opening."""
    s, t0 = talk.speech, talk.start
    return {
        "line": talk.line,
        "language": talk.language,
        "language_name": LANGUAGES[talk.language].name,
        "voice": talk.voice,
        "speaker": talk.speaker,
        "start": round(t0, 6),
        "end": round(t0 + s.seconds, 6),
        "start_sample": start_sample,
        "faces": [{**asdict(f), "centre": list(f.centre), "blinks": list(f.blinks)} for f in talk.faces],
        "phonemes": [[p, round(t0 + a, 6), round(t0 + b, 6)] for p, a, b in s.phonemes],
        "words": [[round(t0 + a, 6), round(t0 + b, 6)] for a, b in s.words],
        "mouth_opening": [round(float(v), 4) for v in opening],
        "frame_times": [round(float(v), 6) for v in times],
    }


def talk_facts(talk: Talk) -> dict:
    """What a talk caption states: the faces and the line, its language and speaker."""
    return {
        "faces": [{"colour": f.colour, "shape": f.shape} for f in talk.faces],
        "speech": {
            "line": talk.line,
            "language": talk.language,
            "speaker": {"colour": talk.faces[talk.speaker].colour, "shape": talk.faces[talk.speaker].shape},
        },
    }


def speech_track(talk: Talk, num_samples: int) -> tuple[np.ndarray, int]:
    """The line as mono audio [num_samples] placed at its start time, and its first sample."""
    audio = np.zeros(num_samples, np.float32)
    first = int(round(talk.start * talk.speech.sample_rate))
    wave = talk.speech.audio
    wave = wave * (SPEECH_PEAK / max(1e-6, float(np.abs(wave).max())))
    n = min(wave.size, num_samples - first)
    audio[first : first + n] = wave[:n]
    return audio, first
