"""Battle clips: every clip is re-encoded to one arena format so that no file property names its model.

A voter (or a script) can read a file's codec, frame rate, size, duration, bit depth, loudness and
container tags; any of those that differ between models identifies them without watching. So each
clip is decoded and written again with the same encoder settings, frame rate, frame size (letterboxed,
aspect kept), duration (trimmed), sample rate, channel count and loudness (RMS normalised, then
peak-limited), with no container or stream tags other than the encoder's own, identical for all.
Files are named by the hash of their bytes, so a name says nothing either.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..media import Clip, read_image, read_video, resample, save_video

CRF = 23
PRESET = "medium"
AUDIO_BITRATE = 96_000
SAMPLE_RATES = (16000, 22050, 24000, 32000, 44100, 48000)


@dataclass(frozen=True)
class ArenaFormat:
    """The one format every battle clip is shown in."""

    width: int = 64
    height: int = 64
    fps: float = 12.0
    seconds: float = 2.0
    sample_rate: int = 16000
    loudness_dbfs: float = -24.0  # RMS level of the soundtrack (headroom for impulsive sounds: peaks stay < 0 dBFS)

    def __post_init__(self):
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096) or self.width % 2 or self.height % 2:
            raise ValueError(f"size: width and height must be even, in 16..4096, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"fps: must be in 1..120, got {self.fps}")
        if not 0.1 <= self.seconds <= 60:
            raise ValueError(f"seconds: must be in 0.1..60, got {self.seconds}")
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(
                f"sample_rate: must be one of 16000, 22050, 24000, 32000, 44100, 48000, got {self.sample_rate}"
            )
        if not -60 <= self.loudness_dbfs <= -3:
            raise ValueError(f"loudness_dbfs: must be in -60..-3 dBFS, got {self.loudness_dbfs}")

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.seconds * self.fps)))

    def to_dict(self) -> dict:
        return asdict(self)


def _letterbox(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    image = Image.fromarray(frame)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top : top + new_h, left : left + new_w] = np.asarray(image)
    return out


def normalise(clip: Clip, fmt: ArenaFormat, sound: bool) -> Clip:
    """The clip in the arena format: frames resampled in time and letterboxed, audio mono at the arena rate
    and loudness (or none when `sound` is False). A clip shorter than the format is refused, since padding
    it would show which model makes short clips."""
    if clip.fps <= 0:
        raise ValueError(f"clip: frame rate must be > 0, got {clip.fps}")
    seconds = clip.frames.shape[0] / clip.fps
    if seconds + 0.5 / clip.fps < fmt.seconds:
        raise ValueError(f"clip: {seconds:.3f} s is shorter than the arena's {fmt.seconds} s")
    times = np.arange(fmt.num_frames) / fmt.fps
    index = np.minimum(np.floor(times * clip.fps + 1e-6).astype(int), clip.frames.shape[0] - 1)
    frames = np.stack([_letterbox(clip.frames[k], fmt.width, fmt.height) for k in index])
    audio = None
    if sound:
        if clip.audio is None or clip.sample_rate is None:
            raise ValueError("clip: has no soundtrack, so it cannot enter a board with sound")
        mono = np.asarray(clip.audio, dtype=np.float32).mean(axis=0, keepdims=True)
        mono = resample(mono, int(clip.sample_rate), fmt.sample_rate)
        n = int(round(fmt.num_frames / fmt.fps * fmt.sample_rate))
        mono = np.pad(mono[:, :n], ((0, 0), (0, max(0, n - mono.shape[1]))))
        audio = loudness_normalise(mono, fmt.loudness_dbfs)
    return Clip(frames=frames, fps=fmt.fps, audio=audio, sample_rate=fmt.sample_rate if sound else None)


def loudness_normalise(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """Scale to an RMS of `dbfs`, then down to a peak of 0.98 if that would clip; silence stays silent."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if rms < 1e-6:
        return np.zeros_like(audio)
    out = audio * (10 ** (dbfs / 20) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > 0.98:
        out = out * (0.98 / peak)
    return out.astype(np.float32)


def broken(clip: Clip, seed: int = 0) -> Clip:
    """A deliberately broken copy for gold battles: frames shuffled in time and drowned in block noise,
    sound replaced by noise at the same level. Any attentive voter prefers the intact clip."""
    rng = np.random.default_rng(seed)
    frames = clip.frames[rng.permutation(clip.frames.shape[0])].astype(np.int16)
    t, h, w, _ = frames.shape
    blocks = rng.integers(-90, 90, (t, (h + 7) // 8, (w + 7) // 8, 3))
    frames = np.clip(frames + np.kron(blocks, np.ones((1, 8, 8, 1), dtype=np.int64))[:, :h, :w], 0, 255)
    audio = None
    if clip.audio is not None:
        noise = rng.standard_normal(clip.audio.shape).astype(np.float32)
        rms = float(np.sqrt(np.mean(clip.audio.astype(np.float64) ** 2))) or 0.1
        audio = np.clip(noise * rms, -1, 1).astype(np.float32)
    return Clip(frames=frames.astype(np.uint8), fps=clip.fps, audio=audio, sample_rate=clip.sample_rate)


def write_first_image(image: np.ndarray, fmt: ArenaFormat, media_dir: Path) -> Path:
    """A TI2V prompt's given first frame, letterboxed to the arena's size like the clips, as a PNG named
    by its hash (battles show it beside the two clips)."""
    from ..media import save_image

    framed = _letterbox(image, fmt.width, fmt.height)
    target = media_dir / f"image-{hashlib.sha256(framed.tobytes()).hexdigest()[:32]}.png"
    if not target.is_file():
        save_image(target, framed)
    return target


def write_normalised(clip: Clip, media_dir: Path) -> Path:
    """Encode an already normalised clip with the arena's fixed encoder settings; name it by its hash."""
    media_dir.mkdir(parents=True, exist_ok=True)
    tmp = media_dir / f".incoming-{uuid.uuid4().hex}.mp4"
    try:
        save_video(
            tmp,
            clip.frames,
            clip.fps,
            clip.audio,
            clip.sample_rate,
            crf=CRF,
            preset=PRESET,
            audio_bitrate=AUDIO_BITRATE,
        )
        target = media_dir / f"{hashlib.sha256(tmp.read_bytes()).hexdigest()[:32]}.mp4"
        os.replace(tmp, target)  # same bytes, same name: replacing an existing copy changes nothing
    finally:
        tmp.unlink(missing_ok=True)
    return target


def ingest(path: Path, fmt: ArenaFormat, media_dir: Path) -> tuple:
    """(prompt text, mode, image, sound path, silent path) of one clip file (NAME.mp4 + NAME.json with
    `prompt` or `caption`, `mode` and for TI2V `image`), normalised into the media dir."""
    sidecar_path = path.with_suffix(".json")
    try:
        sidecar = json.loads(sidecar_path.read_text()) if sidecar_path.is_file() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"sidecar is not JSON ({exc.msg})") from None
    text = sidecar.get("prompt") or sidecar.get("caption") or path.stem.replace("_", " ")
    mode = str(sidecar.get("mode") or "t2v").lower()
    if mode not in ("t2v", "ti2v"):
        raise ValueError(f"mode {mode!r} has no board (t2v, ti2v)")
    clip = read_video(path)
    image = None
    if mode == "ti2v" and sidecar.get("image"):  # the given first frame, kept in the media dir
        given = path.parent / sidecar["image"]  # relative to the clip, or absolute
        image = str(write_first_image(read_image(given), fmt, media_dir)) if given.is_file() else None
    sound = None
    if clip.audio is not None:
        sound = write_normalised(normalise(clip, fmt, True), media_dir)
    silent = write_normalised(normalise(clip, fmt, False), media_dir)
    return text, mode, image, sound, silent
