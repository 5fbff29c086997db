"""Speech and lip-sync metrics, weight-free or from wheels that ship their models.

- Lip sync (the role SyncNet's LSE-D / LSE-C play, without weights): the speaker's mouth opening is
  measured in the frames as the dark area inside its face (the face found by its prompted colour),
  the speech envelope in the audio; the lag within +-500 ms that correlates them best is the offset
  (positive: sound after picture) and the correlation there the confidence.
- `speech_presence`: the share of the clip Silero VAD (model in the `silero-vad` wheel) calls speech.
- `speech_similarity`: DTW distance of MFCCs between the clip's speech and eSpeak's rendering of the
  prompted line, scaled per line between the same line in another voice (1) and the language's other
  lines (0), so ground truth reads near 1 and a different line near 0 in every language.
- `speech_wer` (English): PocketSphinx (en-us model in its wheel) decoding constrained by a grammar of
  the prompted line and the language's other lines; its open-vocabulary decoding of eSpeak's voices is
  poor, so the figure is only meaningful beside ground truth's, which the report always shows.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from scipy.ndimage import binary_fill_holes

from ..world.lines import LINES
from ..world.speech import speak
from ..world.talk import MOUTH
from .tracking import colour_labels

ENVELOPE_RATE = 100.0  # Hz: lip-sync lags are searched in 10 ms steps
MAX_LAG_S = 0.5
SPAN_MARGIN_S = 0.3
REFERENCE_VOICE, OTHER_VOICE = "bright", "low"  # eSpeak renderings the similarity is scaled between
VAD_RATE = 16000
_MOUTH_LUMA = float(MOUTH @ np.array([0.299, 0.587, 0.114]))


def mouth_opening(frames: np.ndarray, colour: str) -> np.ndarray:
    """Per frame, the mouth's area as a share of the face's: the dark pixels enclosed by the face of
    `colour` in its lower half, each weighted by how much darker than the face it is; NaN where no face.
    """
    from ..world.scene import COLOURS

    labels = colour_labels(frames) == list(COLOURS).index(colour)
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    out = np.full(len(frames), np.nan)
    import cv2

    for t in range(len(frames)):
        count, comp, stats, _ = cv2.connectedComponentsWithStats(labels[t].astype(np.uint8), connectivity=8)
        if count < 2:
            continue
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        face = comp == k
        filled = binary_fill_holes(face)
        r0, h = stats[k, cv2.CC_STAT_TOP], stats[k, cv2.CC_STAT_HEIGHT]
        inside = filled & ~face
        inside[: r0 + int(0.55 * h)] = False  # eyes are holes too: keep the lower part of the face
        face_luma = float(np.median(luma[t][face]))
        depth = np.clip((face_luma - luma[t]) / max(face_luma - _MOUTH_LUMA, 10.0), 0, 1)
        out[t] = float((depth * inside).sum() / filled.sum())
    return out


def speech_envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Loudness of the voice band (300-3400 Hz) in 20 ms windows every 10 ms, as [T] amplitudes."""
    from scipy.signal import butter, sosfiltfilt

    mono = np.asarray(audio, np.float64).mean(axis=0)
    band = sosfiltfilt(butter(4, [300, min(3400, 0.45 * sample_rate)], "bandpass", fs=sample_rate, output="sos"), mono)
    hop, win = int(sample_rate / ENVELOPE_RATE), int(0.02 * sample_rate)
    padded = np.pad(band**2, (win // 2, win // 2))
    n = len(mono) // hop
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    starts = np.arange(n) * hop
    return np.sqrt((csum[starts + win] - csum[starts]) / win)


def lip_sync(
    mouth: np.ndarray, fps: float, envelope: np.ndarray, spans: list[tuple[float, float]] | None = None
) -> tuple[float | None, float | None]:
    """(offset ms, correlation) of the lag in +-MAX_LAG_S that best correlates the mouth opening (per
    frame) with the envelope (at ENVELOPE_RATE); positive when the sound comes after the picture.

    With `spans` (speech found in the audio, seconds), only the mouth within SPAN_MARGIN_S of them is
    compared, so that impacts and ambience elsewhere in the clip do not pull the lag."""
    valid = ~np.isnan(mouth)
    if valid.sum() < 4 or np.nanstd(mouth) < 1e-6 or envelope.std() < 1e-9:
        return None, None
    frame_times = np.arange(len(mouth)) / fps
    grid = np.arange(0, frame_times[-1], 1 / ENVELOPE_RATE)
    m = np.interp(grid, frame_times[valid], mouth[valid])
    if spans:
        near = np.zeros(len(grid), bool)
        for a, b in spans:
            near |= (grid >= a - SPAN_MARGIN_S) & (grid <= b + SPAN_MARGIN_S)
        grid, m = grid[near], m[near]
        if len(grid) < 8:
            return None, None
    best_lag, best = 0, -np.inf
    max_lag = int(MAX_LAG_S * ENVELOPE_RATE)
    steps = np.round(grid * ENVELOPE_RATE).astype(int)
    for lag in range(-max_lag, max_lag + 1):
        idx = steps + lag  # envelope sample that the mouth at grid[i] should match
        keep = (idx >= 0) & (idx < len(envelope))
        if keep.sum() < len(grid) // 2:
            continue
        a, b = m[keep], envelope[idx[keep]]
        if a.std() < 1e-9 or b.std() < 1e-12:
            continue
        c = float(np.corrcoef(a, b)[0, 1])
        if c > best:
            best, best_lag = c, lag
    if not np.isfinite(best):
        return None, None
    return best_lag * 1000 / ENVELOPE_RATE, best


_VAD_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _vad():
    from silero_vad import load_silero_vad

    return load_silero_vad()


def _resample(mono: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if sample_rate == target:
        return mono.astype(np.float32)
    g = np.gcd(sample_rate, target)
    return resample_poly(mono, target // g, sample_rate // g).astype(np.float32)


def speech_spans(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of the speech Silero VAD finds in audio [C, N]."""
    import torch
    from silero_vad import get_speech_timestamps

    mono = _resample(np.asarray(audio, np.float64).mean(axis=0), sample_rate, VAD_RATE)
    with _VAD_LOCK, torch.no_grad():
        spans = get_speech_timestamps(torch.from_numpy(mono), _vad(), sampling_rate=VAD_RATE, return_seconds=True)
    return [(float(s["start"]), float(s["end"])) for s in spans]


def _mfcc(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    import librosa

    m = librosa.feature.mfcc(y=wave.astype(np.float32), sr=sample_rate, n_mfcc=14, hop_length=int(0.01 * sample_rate))[
        1:
    ]
    m = m - m.mean(axis=1, keepdims=True)  # cepstral mean normalisation: channel and voice colour
    return m / (m.std(axis=1, keepdims=True) + 1e-6)


def _dtw(a: np.ndarray, b: np.ndarray) -> float:
    import librosa

    cost, path = librosa.sequence.dtw(X=a, Y=b, metric="euclidean")
    return float(cost[-1, -1] / len(path))


@lru_cache(maxsize=256)
def _references(line: str, language: str, sample_rate: int) -> tuple[np.ndarray, float, float]:
    """eSpeak's MFCCs of `line`, and the DTW distances the similarity is scaled between: the same line in
    another voice, and the mean over the language's other lines."""
    ref = _mfcc(speak(line, language, REFERENCE_VOICE, sample_rate).audio, sample_rate)
    same = _dtw(_mfcc(speak(line, language, OTHER_VOICE, sample_rate).audio, sample_rate), ref)
    others = [
        _dtw(_mfcc(speak(o, language, REFERENCE_VOICE, sample_rate).audio, sample_rate), ref)
        for o in LINES.get(language, ())
        if o != line
    ]
    return ref, same, float(np.mean(others)) if others else 2 * same


def speech_similarity(audio: np.ndarray, sample_rate: int, line: str, language: str, spans) -> float | None:
    """1 near the prompted line said by another voice, 0 near a different line (clipped to [0, 1]); 0 when
    the clip has no speech (nothing of the line is said)."""
    if not spans:
        return 0.0
    mono = np.asarray(audio, np.float64).mean(axis=0)
    voiced = mono[int(spans[0][0] * sample_rate) : int(spans[-1][1] * sample_rate)]
    if voiced.size < 0.1 * sample_rate:
        return 0.0
    ref, same, other = _references(line, language, sample_rate)
    d = _dtw(_mfcc(voiced, sample_rate), ref)
    return float(np.clip((other - d) / max(other - same, 1e-6), 0.0, 1.0))


_ASR_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _recogniser():
    from pocketsphinx import Decoder

    return Decoder(loglevel="FATAL")


def recognise_line(audio: np.ndarray, sample_rate: int, candidates: list[str]) -> str:
    """What PocketSphinx hears, decoding only the candidate lines (lower-case English words)."""
    mono = _resample(np.asarray(audio, np.float64).mean(axis=0), sample_rate, 16000)
    pcm = (np.clip(np.concatenate([np.zeros(4000), mono, np.zeros(4000)]), -1, 1) * 32767).astype(np.int16)
    grammar = "#JSGF V1.0;\ngrammar lines;\npublic <line> = " + " | ".join(f"( {c} )" for c in candidates) + ";\n"
    with _ASR_LOCK:
        dec = _recogniser()
        dec.add_jsgf_string("lines", grammar)
        dec.activate_search("lines")
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
    return hyp.hypstr if hyp else ""


def _words(text: str) -> str:
    return " ".join("".join(ch if ch.isalpha() or ch == "'" else " " for ch in text.lower()).split())


def speech_wer(audio: np.ndarray, sample_rate: int, line: str) -> tuple[float, str]:
    """(word error rate, what was heard) of an English line, decoded against the English lines."""
    import jiwer

    target = _words(line)
    candidates = sorted({target, *(_words(o) for o in LINES["en"])})
    heard = recognise_line(audio, sample_rate, candidates)
    return (float(jiwer.wer(target, heard)) if heard else 1.0), heard
