"""Media I/O: MP4 with sound (PyAV), images (Pillow) and audio files, and the `Clip` type.

Everything a user can hand us passes through here, so every reader bounds what it will decode
(pixels, frames, seconds) and turns decoder failures into one `MediaError` that names the file and
what was wrong. Every writer goes to a temporary file beside the target and renames it, so a failure
never leaves a partial MP4 behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

# AAC (ffmpeg's native encoder) accepts only these rates; others are resampled to the next one up.
AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
MIN_SAMPLE_RATE = 8000
MAX_PIXELS = 4096 * 4096  # per image or video frame: larger inputs are refused, not decoded
MAX_FRAMES = 10_000
MAX_AUDIO_SECONDS = 600.0
_AAC_FRAME = 1024  # samples per AAC frame


class MediaError(ValueError):
    """A media file could not be read or written; the message names the file and the reason."""


@dataclass
class Clip:
    """One video with sound, as the world makes it and the pipeline returns it.

    frames: uint8 [T, H, W, 3]; audio: float32 [C, N] in [-1, 1] (C = 1 or 2);
    meta holds the seed, the settings and, for world clips, the ground truth.
    """

    frames: np.ndarray
    fps: float
    audio: np.ndarray | None = None
    sample_rate: int | None = None
    caption: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.frames.shape[0] / self.fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# ----------------------------------------------------------------------------------------- checks


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"frames: expected shape [T, H, W, 3], got {list(frames.shape)}")
    if frames.shape[0] == 0:
        raise MediaError("frames: the video has no frames; at least 1 is required")
    if frames.dtype != np.uint8:
        raise MediaError(f"frames: expected dtype uint8 (0..255), got {frames.dtype}")
    if frames.shape[1] < 2 or frames.shape[2] < 2:
        raise MediaError(f"frames: each frame must be at least 2x2 pixels, got {frames.shape[2]}x{frames.shape[1]}")
    if frames.shape[1] * frames.shape[2] > MAX_PIXELS:
        raise MediaError(f"frames: {frames.shape[2]}x{frames.shape[1]} exceeds the {MAX_PIXELS} pixel limit")
    return frames


def _check_audio(audio: np.ndarray, sample_rate: int | None) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise MediaError(f"audio: expected shape [C, N] with C = 1 or 2, got {list(audio.shape)}")
    if sample_rate is None or int(sample_rate) < MIN_SAMPLE_RATE:
        raise MediaError(f"sample_rate: must be an integer >= {MIN_SAMPLE_RATE} Hz, got {sample_rate}")
    if not np.isfinite(audio).all():
        raise MediaError("audio: contains NaN or infinite samples")
    return np.clip(audio, -1.0, 1.0)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sizes: an odd edge is padded by repeating its last row/column."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield an empty staging directory beside `path`; if the block succeeds, it replaces `path` whole
    (the old directory is moved aside, then removed), so readers never see a half-written one."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; model directories are read by other users
    try:
        yield staging
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_json_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ----------------------------------------------------------------------------------------- writing


def save_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    *,
    crf: int = 18,
    preset: str = "medium",
    audio_bitrate: int = 128_000,
    repeatable: bool = True,
) -> Path:
    """Write frames (uint8 [T, H, W, 3]) and optional audio (float32 [C, N]) as MP4: H.264 yuv420p +
    AAC, `+faststart` so browsers can start playing before the download ends.

    Audio packets are time-stamped in samples from 0, so sound and picture share one clock; AAC's
    encoder delay is written as an edit list, which decoders (and `read_video`) remove. The same frames
    and sound give the same bytes on every run (with one build of PyAV), so an evaluation of the same
    clips reads the same. That needs x264's macroblock tree off (`repeatable`, the default): with it,
    x264 coded the same frames differently from run to run once the process had sampled a model. The
    tree saves bytes at the same CRF; `repeatable=False` turns it back on (`bench/mp4_size.py` measures
    what it saves).
    """
    frames = _pad_even(_check_frames(frames))
    if not (0 < float(fps) <= 240):
        raise MediaError(f"fps: must be in (0, 240], got {fps}")
    rate = Fraction(float(fps)).limit_denominator(1001)
    if audio is not None:
        audio = _check_audio(audio, sample_rate)
        audio, sample_rate = _to_aac_rate(audio, int(sample_rate))
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise MediaError(f"path: output must end in .mp4, got {path.name!r}")
    with atomic_path(path) as tmp:
        try:
            _encode_mp4(tmp, frames, rate, audio, sample_rate, crf, preset, audio_bitrate, repeatable)
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: encoding failed: {exc}") from exc
    return path


def _encode_mp4(tmp, frames, rate, audio, sample_rate, crf, preset, audio_bitrate, repeatable) -> None:
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        video = container.add_stream("libx264", rate=rate)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.codec_context.time_base = 1 / rate
        video.options = {"crf": str(crf), "preset": preset, **({"x264-params": "mbtree=0"} if repeatable else {})}
        sound = None
        if audio is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            sound = container.add_stream("aac", rate=sample_rate, layout=layout)
            sound.bit_rate = audio_bitrate
            sound.codec_context.time_base = Fraction(1, sample_rate)
        for i, image in enumerate(frames):
            # converted here, not inside `encode`: with the tree on, PyAV's implicit conversion gave a
            # different stream on each write of the same frames within one process (tests/test_media.py)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            frame.time_base = video.codec_context.time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            for start in range(0, audio.shape[1], _AAC_FRAME):
                chunk = np.ascontiguousarray(audio[:, start : start + _AAC_FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate = sample_rate
                frame.pts = start
                frame.time_base = Fraction(1, sample_rate)
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))


def _to_aac_rate(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    if sample_rate in AAC_SAMPLE_RATES:
        return audio, sample_rate
    target = next((r for r in AAC_SAMPLE_RATES if r >= sample_rate), AAC_SAMPLE_RATES[-1])
    return resample(audio, sample_rate, target), target


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy) of float32 [C, N] audio."""
    from scipy.signal import resample_poly

    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    g = np.gcd(int(source_rate), int(target_rate))
    out = resample_poly(audio, int(target_rate) // g, int(source_rate) // g, axis=-1)
    return out.astype(np.float32)


def save_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float32 [C, N] audio as 16-bit PCM WAV, atomically."""
    audio = _check_audio(audio, sample_rate)
    path = Path(path)
    pcm = np.round(audio.T * 32767).astype("<i2")
    import wave

    with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(audio.shape[0])
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm.tobytes())
    return path


# ----------------------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty")
    try:
        return av.open(str(path), mode="r", timeout=10.0)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: not a readable media file ({exc})") from exc


def read_video(path: str | os.PathLike, *, max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS) -> Clip:
    """Read an MP4 (or any container PyAV reads) into a `Clip`: frames uint8 [T, H, W, 3] and, if
    present, audio float32 [C, N] at the file's sample rate."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        vstream = container.streams.video[0]
        w, h = vstream.codec_context.width, vstream.codec_context.height
        if w * h > max_pixels:
            raise MediaError(f"{path}: frames of {w}x{h} exceed the limit of {max_pixels} pixels")
        fps = float(vstream.average_rate or vstream.guessed_rate or 0) or 0.0
        frames = []
        try:
            for frame in container.decode(vstream):
                if len(frames) >= max_frames:
                    raise MediaError(f"{path}: more than {max_frames} frames (max_frames)")
                frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: video is corrupt or truncated ({exc})") from exc
    if not frames:
        raise MediaError(f"{path}: the video stream holds no decodable frame")
    audio, sr = None, None
    with _open(path) as container:
        if container.streams.audio:
            audio, sr = _decode_audio(container, path, None, MAX_AUDIO_SECONDS)
    return Clip(frames=np.stack(frames), fps=fps, audio=audio, sample_rate=sr)


def read_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int | None = None,
    mono: bool = False,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> tuple[np.ndarray, int]:
    """Read the audio of a WAV, MP3, MP4 (or other) file as float32 [C, N] in [-1, 1].

    sample_rate resamples to that rate; mono averages the channels.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        audio, sr = _decode_audio(container, path, sample_rate, max_seconds)
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    return audio, sr


def _decode_audio(container, path, sample_rate: int | None, max_seconds: float) -> tuple[np.ndarray, int]:
    stream = container.streams.audio[0]
    sr = int(sample_rate or stream.codec_context.sample_rate or 0)
    if sr < MIN_SAMPLE_RATE:
        raise MediaError(f"{path}: audio sample rate {sr} Hz is below {MIN_SAMPLE_RATE} Hz")
    channels = stream.codec_context.channels or 1
    layout = "mono" if channels == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
    limit = int(max_seconds * sr)
    chunks, total = [], 0
    try:
        for frame in container.decode(stream):
            frame.pts = None  # let the resampler run on sample counts, not on possibly broken stamps
            for out in resampler.resample(frame):
                chunk = out.to_ndarray()
                total += chunk.shape[1]
                if total > limit:
                    raise MediaError(f"{path}: audio longer than {max_seconds:g} s (max_seconds)")
                chunks.append(chunk)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: audio is corrupt or truncated ({exc})") from exc
    if not chunks:
        raise MediaError(f"{path}: the audio stream holds no decodable sample")
    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    if stream.duration and stream.time_base:
        # AAC pads its last frame; the stream's stated duration says where the real sound ends.
        audio = audio[:, : max(1, round(float(stream.duration * stream.time_base) * sr))]
    return audio, sr


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a PNG/JPEG (or other Pillow format) as uint8 [H, W, 3] RGB.

    The header's size is checked before any pixel is decoded, so a decompression bomb is refused
    cheaply rather than exhausting memory.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                w, h = image.size
                if w * h > max_pixels:
                    raise MediaError(f"{path}: image of {w}x{h} exceeds the limit of {max_pixels} pixels")
                image.load()
                return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable image ({exc})") from exc


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write uint8 [H, W, 3] as PNG (or the format the suffix names), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(
            tmp, format=Image.registered_extensions()[path.suffix.lower()]
        )
    return path
