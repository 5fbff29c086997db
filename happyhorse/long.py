"""Clips longer than one window, continued clips and multi-shot clips, made window by window.

The model makes one window (its default length: 25 frames at 12 fps) at a time, so memory and time grow
linearly with length: every window costs the same. A later window is given the previous one's last
OVERLAP_LATENT latent frames in place (`Condition(video=...)`) and the sound under the first part of
them, and continues from there. The video needs no blend: the overlap's frames are given, so they are the
previous window's exactly. The sound is cross-faded over the rest of the overlap, which both windows
made, so that no click marks the seam.

A multi-shot clip is one such sequence per shot, each from its own prompt, joined by hard cuts. A later
shot is given the frame before the cut as a subject reference (the subject is kept) and the sound before
the cut as its first sound, the frames made under that sound dropped: the scene's sound runs on across
the cut while the picture cuts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .conditioning import Condition
from .media import read_video
from .pipeline import HappyHorseOutput, HappyHorsePipeline

OVERLAP_LATENT = 3  # latent frames a later window is given: 1 + 2 pt = 9 frames (0.75 s at 12 fps, pt 4)
GIVEN_SOUND_SHARE = 0.5  # of the overlap, the share whose sound is given; the rest is cross-faded
MAX_SHOTS = 8
MAX_SECONDS = 60.0  # of one request, in windows


@dataclass
class Sampling:
    """What every window of a request shares: the sampling overrides and the base seed."""

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    audio_guidance_scale: float | None = None
    seed: int = 0

    def call(self, k: int) -> dict:
        return {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "audio_guidance_scale": self.audio_guidance_scale,
            "seed": self.seed + k,
        }


def window_frames(pipe: HappyHorsePipeline, fps: float) -> int:
    """Frames of one window: the model's default length at `fps`."""
    return pipe.video_codec.num_frames(max(1, round(pipe.defaults["seconds"] * fps)))


def overlap_frames(pipe: HappyHorsePipeline, fps: float) -> int:
    """Frames a later window is given: OVERLAP_LATENT whole latent frames, fewer in a window too short for
    them (it must still make one latent frame of its own)."""
    pt = pipe.video_codec.patch_t
    latent = 1 + (window_frames(pipe, fps) - 1) // pt
    return 1 + (max(1, min(OVERLAP_LATENT, latent - 1)) - 1) * pt


def check_long(pipe: HappyHorsePipeline, seconds: float, fps: float, shots: int = 1) -> None:
    """Refuse a length the windows cannot make, or more shots than it holds (one window per shot at least)."""
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds: must be in (0, {MAX_SECONDS:g}], got {seconds}")
    window = window_frames(pipe, fps)
    if window <= overlap_frames(pipe, fps):
        raise ValueError(f"seconds: this model's windows ({window} frames) are too short to continue")
    if shots > MAX_SHOTS:
        raise ValueError(f"shots: at most {MAX_SHOTS}, got {shots}")
    if shots > 1 and seconds / shots < window / fps - 1e-9:
        raise ValueError(
            f"shots: {shots} shots need at least {shots * window / fps:.2f} s ({window / fps:.2f} s each), "
            f"got {seconds:g} s; give more --seconds or fewer shots"
        )


class Stitcher:
    """The clip so far, and how each new window joins it (overlap or cut)."""

    def __init__(self, pipe: HappyHorsePipeline, fps: float):
        self.pipe, self.fps = pipe, fps
        self.sample_rate = pipe.audio_codec.sample_rate
        self.frames: np.ndarray | None = None  # uint8 [T, H, W, 3]
        self.audio: np.ndarray | None = None  # float32 [C, N]
        self.seams: list[int] = []  # first frame each later window made
        self.cuts: list[int] = []  # first frame of each later shot
        self.timings: dict[str, float] = {}
        self.windows = 0

    def samples(self, frames: int) -> int:
        return round(frames / self.fps * self.sample_rate)

    def start(self, frames: np.ndarray, audio: np.ndarray) -> None:
        self.frames, self.audio = frames, self._fit(audio, len(frames))

    def _fit(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """Audio cut or padded to exactly the samples of `frames` frames (sample positions are absolute:
        frame f starts at sample round(f / fps x rate), so no seam adds or drops a sample)."""
        n = self.samples(frames)
        return np.pad(audio, ((0, 0), (0, max(0, n - audio.shape[1]))))[:, :n]

    def overlap(self) -> int:
        """Frames the next window shares with the clip so far: the overlap, or fewer in a short clip."""
        return min(overlap_frames(self.pipe, self.fps), len(self.frames))

    def tail(self, cut: bool) -> tuple[list[Condition], tuple[np.ndarray, int], int]:
        """(conditions, given sound, frames to drop) for the next window: the last frames in place (or, at
        a cut, the last frame as a reference) and the sound under the first part of the overlap."""
        ov = self.overlap()
        first = self.samples(len(self.frames) - ov)
        given = int((self.samples(len(self.frames)) - first) * GIVEN_SOUND_SHARE)
        sound = self.audio[:, first : first + given]
        if cut:
            return [Condition(image=self.frames[-1], reference=True)], (sound, self.sample_rate), ov
        return [Condition(video=self.frames[-ov:])], (sound, self.sample_rate), ov

    def join(self, out: HappyHorseOutput, drop: int, cut: bool) -> None:
        """Append a window that starts `drop` frames before the clip's end; cross-fade its sound over the part
        of the overlap it made itself."""
        start = len(self.frames) - drop
        frames, audio = out.frames[0], out.audio[0]
        ov_n = self.samples(start + drop) - self.samples(start)
        given = int(ov_n * GIVEN_SOUND_SHARE)
        fade = ov_n - given
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[None]
        end = self.audio.shape[1]
        self.audio[:, end - fade :] = (1 - ramp) * self.audio[:, end - fade :] + ramp * audio[:, given:ov_n]
        (self.cuts if cut else self.seams).append(len(self.frames))
        self.frames = np.concatenate([self.frames, frames[drop:]])
        self.audio = self._fit(np.concatenate([self.audio, audio[:, ov_n:]], axis=1), len(self.frames))

    def trim(self, frames: int) -> None:
        self.frames, self.audio = self.frames[:frames], self.audio[:, : self.samples(frames)]
        self.seams = [f for f in self.seams if f < frames]

    def add_timings(self, out: HappyHorseOutput) -> None:
        self.windows += 1
        for key, value in out.timings.items():
            self.timings[key] = self.timings.get(key, 0.0) + value


def continued_clip(
    pipe: HappyHorsePipeline, path, fps: float, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """A clip to extend, read and brought to the output's fps (nearest frames), size and sound format."""
    from .media import MediaError

    try:
        clip = read_video(path)
    except MediaError as exc:
        raise ValueError(f"extend: {exc}") from None
    count = round(len(clip.frames) / clip.fps * fps) if clip.fps else 0
    needed = overlap_frames(pipe, fps)
    if count < needed:
        raise ValueError(
            f"extend: {path} holds {len(clip.frames)} frame(s) ({count} at {fps:g} fps); "
            f"a clip to continue needs at least {needed} at the output's rate"
        )
    picks = np.minimum(np.round(np.arange(count) * clip.fps / fps).astype(int), len(clip.frames) - 1)
    frames = np.stack([pipe.prepare_image(clip.frames[i], height, width).numpy() for i in picks])
    n = round(count / fps * pipe.audio_codec.sample_rate)
    if clip.audio is None:  # a silent clip continues from silence
        audio = np.zeros((pipe.audio_codec.channels, n), np.float32)
    else:
        audio = pipe.prepare_audio((clip.audio, clip.sample_rate))
        audio = np.pad(audio, ((0, 0), (0, max(0, n - audio.shape[1]))))[:, :n]
    return frames, audio


def make_long(
    pipe: HappyHorsePipeline,
    shots: list[str],
    seconds: float,
    sampling: Sampling,
    *,
    image=None,
    audio=None,
    extend=None,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
    callback=None,
) -> HappyHorseOutput:
    """`seconds` of clip from one prompt per shot (equal shares), continuing `extend` (an MP4) if given:
    then the output is that clip followed by `seconds` more. `image` is the first frame; `audio` a
    soundtrack for the whole clip (each window is given its span)."""
    start = time.perf_counter()
    fps = float(fps or pipe.defaults["fps"])
    height = height or pipe.defaults["height"]
    width = width or pipe.defaults["width"]
    check_long(pipe, seconds, fps, len(shots))
    window = window_frames(pipe, fps)
    window_s = window / fps
    stitch = Stitcher(pipe, fps)
    given_audio = pipe.prepare_audio(audio) if audio is not None else None
    sr = pipe.audio_codec.sample_rate
    made = 0  # frames made so far for the request (excluding a continued clip)
    if extend is not None:
        stitch.start(*continued_clip(pipe, extend, fps, height, width))
    base = 0 if extend is None else len(stitch.frames)
    per_shot = round(seconds * fps / len(shots))
    k, first_mode = 0, None
    for s, prompt in enumerate(shots):
        target = per_shot if s < len(shots) - 1 else round(seconds * fps) - made
        shot_made = 0
        while shot_made < target:
            common = dict(seconds=window_s, height=height, width=width, fps=fps, **sampling.call(k))
            if stitch.frames is None:  # the very first window
                sound = None if given_audio is None else (given_audio[:, : stitch.samples(window)], sr)
                out = pipe(prompt, image, sound, **common, callback=callback)
                first_mode = out.mode
                stitch.start(out.frames[0], out.audio[0])
                shot_made += window
            else:
                cut = shot_made == 0 and s > 0
                conditions, sound, drop = stitch.tail(cut)
                if given_audio is not None:  # the window's span of the given soundtrack (none with extend)
                    start = len(stitch.frames) - drop
                    span = given_audio[:, stitch.samples(start) : stitch.samples(start + window)]
                    sound = (span, sr) if span.shape[1] else None  # past its end the sound is made
                out = pipe(prompt, None, sound, conditions=conditions, **common, callback=callback)
                stitch.join(out, drop, cut)
                shot_made += window - drop
            stitch.add_timings(out)
            k += 1
        made += target
        stitch.trim(base + made)  # a shot ends where its share does: the next one cuts in there
    total = base + made
    frames, sound = stitch.frames, stitch.audio
    settings = {
        **out.settings,
        "seconds": total / fps,
        "num_frames": total,
        "seed": sampling.seed,
        "windows": stitch.windows,
        "overlap_frames": overlap_frames(pipe, fps),
        "seams": [f for f in stitch.seams if f < total],
        "cuts": [f for f in stitch.cuts if f < total],
        "shots": list(shots),
        "extended_frames": base,
    }
    settings.pop("conditions", None)
    timings = {**stitch.timings, "total_s": time.perf_counter() - start}
    mode = "TV2V" if extend is not None else first_mode
    return HappyHorseOutput(frames[None], sound[None].astype(np.float32), fps, sr, mode, settings, timings)
