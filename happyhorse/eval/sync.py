"""Audio-video synchrony: AV-Align (Yariv et al. 2024) and the offset of each impact sound.

Audio onsets come from librosa's spectral-flux onset detector, backtracked to the energy minimum
before each peak and run with a 4 ms hop, so an onset is placed within a few milliseconds.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

ONSET_HOP_S = 0.004
MAX_MATCH_S = 0.5  # an impact with no sound within this distance counts as this far off


def audio_onsets(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Onset times in seconds of audio [C, N] (channels averaged)."""
    import librosa

    mono = np.asarray(audio, dtype=np.float32).mean(axis=0)
    if np.abs(mono).max() < 1e-4:
        return np.zeros(0)
    hop = max(1, int(ONSET_HOP_S * sample_rate))
    envelope = librosa.onset.onset_strength(
        y=mono, sr=sample_rate, hop_length=hop, n_fft=256, n_mels=32, fmax=sample_rate / 2
    )
    frames = librosa.onset.onset_detect(
        onset_envelope=envelope, sr=sample_rate, hop_length=hop, backtrack=True, delta=0.2, wait=int(0.05 / ONSET_HOP_S)
    )
    return frames * hop / sample_rate


def video_peaks(flow_means: np.ndarray) -> np.ndarray:
    """Frame indices of peaks in the mean optical-flow magnitude (pair k-1 -> k is frame k)."""
    if len(flow_means) < 3:
        return np.zeros(0, dtype=int)
    peaks, _ = find_peaks(flow_means, prominence=max(0.05, 0.1 * float(flow_means.max())))
    return peaks + 1


def av_align(onsets_s: np.ndarray, peak_frames: np.ndarray, fps: float, window: int = 1) -> float:
    """AV-Align: the share of audio peaks with a video peak within `window` frames, and of video
    peaks with an audio peak within it, over all peaks: 1 / (|A| + |V|) (sum_a [match] + sum_v [match])."""
    audio_frames = np.round(np.asarray(onsets_s) * fps)
    if len(audio_frames) + len(peak_frames) == 0:
        return 1.0
    hits = sum(bool(np.any(np.abs(peak_frames - a) <= window)) for a in audio_frames)
    hits += sum(bool(np.any(np.abs(audio_frames - v) <= window)) for v in peak_frames)
    return hits / (len(audio_frames) + len(peak_frames))


def impact_offsets_ms(impacts_s: list[float], onsets_s: np.ndarray) -> list[float]:
    """Signed offset (ms, sound minus picture) from each visual impact to its nearest sound onset."""
    out = []
    for t in impacts_s:
        if len(onsets_s) == 0:
            out.append(MAX_MATCH_S * 1000)
            continue
        nearest = onsets_s[np.argmin(np.abs(onsets_s - t))]
        out.append(float(np.clip(nearest - t, -MAX_MATCH_S, MAX_MATCH_S) * 1000))
    return out
