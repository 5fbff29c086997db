"""Temporal and imaging metrics in the manner of VBench, with classical optical flow instead of
networks (no weights can be downloaded here). Each is named for what it is; where VBench's own
measure needs a network (DINO, CLIP, AMT, MUSIQ), ours is a *proxy* and says so.

Every function takes frames uint8 [T, H, W, 3] and returns a float; `metric.py` turns values
into scores in [0, 1].
"""

from __future__ import annotations

import cv2
import numpy as np


def _gray(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def optical_flow(frames: np.ndarray) -> np.ndarray:
    """Farneback dense flow between consecutive frames: [T-1, H, W, 2] in pixels per frame.

    Frames smaller than 128 px are upsampled for the pyramid and the flow scaled back, so that a few
    pixels of motion in a 64 x 64 clip is still resolved.
    """
    gray = _gray(frames)
    h, w = gray.shape[1:]
    scale = max(1, int(np.ceil(128 / min(h, w))))
    if scale > 1:
        gray = np.stack([cv2.resize(g, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR) for g in gray])
    flows = []
    for a, b in zip(gray[:-1], gray[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 3, 5, 1.2, 0)
        if scale > 1:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / scale
        flows.append(flow)
    if not flows:
        return np.zeros((0, h, w, 2), np.float32)
    return np.stack(flows).astype(np.float32)


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow, axis=-1)


def temporal_flickering(frames: np.ndarray, flow: np.ndarray, static_px: float = 0.2) -> float:
    """VBench's temporal flickering, (255 - MAE) / 255 of consecutive frames, restricted (its static
    filter) to pixels whose flow is below `static_px`, so that motion is not counted as flicker."""
    if len(frames) < 2:
        return 1.0
    diffs = np.abs(frames[1:].astype(np.float32) - frames[:-1].astype(np.float32)).mean(-1)
    static = flow_magnitude(flow) < static_px
    mae = float(diffs[static].mean()) if static.any() else float(diffs.mean())
    return (255.0 - mae) / 255.0


def top5_flow(flow: np.ndarray) -> np.ndarray:
    """Per frame pair, the mean of the largest 5 % of flow magnitudes (VBench's dynamic degree)."""
    mags = flow_magnitude(flow).reshape(len(flow), -1)
    k = max(1, int(0.05 * mags.shape[1]))
    return np.sort(mags, axis=1)[:, -k:].mean(axis=1)


def dynamic_degree(frames: np.ndarray, flow: np.ndarray) -> tuple[bool, float]:
    """VBench's rule: a clip is dynamic when at least round(4 * T / 16) frame pairs have a top-5 %
    flow above 6 * min(H, W) / 256 pixels. Returns (dynamic, mean top-5 % flow in pixels)."""
    if len(flow) == 0:
        return False, 0.0
    peaks = top5_flow(flow)
    threshold = 6.0 * min(frames.shape[1:3]) / 256.0
    needed = max(1, round(4 * len(frames) / 16))
    return bool((peaks > threshold).sum() >= needed), float(peaks.mean())


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(
        image, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def motion_smoothness(frames: np.ndarray, changed: float = 8.0) -> float:
    """VBench's motion smoothness with classical flow in place of AMT: drop every odd frame, rebuild it
    from its neighbours by flow-warped interpolation, score (255 - MAE) / 255 against the real one.

    The MAE is taken over the pixels that change (by more than `changed` between the neighbours or
    against the real frame): with small objects on a still room, the still pixels would otherwise
    hide every interpolation error.
    """
    if len(frames) < 3:
        return 1.0
    errors = []
    odd = frames[1::2]
    pairs = np.stack([frames[t - 1 : t + 2 : 2] for t in range(1, len(frames) - 1, 2)])  # (K, 2, H, W, 3)
    forward = optical_flow(pairs.reshape(-1, *frames.shape[1:]))[::2]  # flow t-1 -> t+1 per pair
    backward = optical_flow(pairs[:, ::-1].reshape(-1, *frames.shape[1:]))[::2]
    for k, t in enumerate(range(1, len(frames) - 1, 2)):
        a, b = frames[t - 1].astype(np.float32), frames[t + 1].astype(np.float32)
        f_ab, f_ba = forward[k], backward[k]
        middle = 0.5 * (_warp(a, 0.5 * f_ba) + _warp(b, 0.5 * f_ab))
        real = odd[k].astype(np.float32)
        moving = (np.abs(a - b).max(-1) > changed) | (np.abs(real - a).max(-1) > changed)
        error = np.abs(middle - real).mean(-1)
        errors.append(float(error[moving].mean()) if moving.any() else 0.0)
    return (255.0 - float(np.mean(errors))) / 255.0


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-8))


def _vbench_consistency(features: list[np.ndarray]) -> float:
    """VBench's weighting: each frame's similarity to the first and to the previous frame, averaged."""
    if len(features) < 2:
        return 1.0
    sims = [(_cosine(f, features[0]) + _cosine(f, features[t - 1])) / 2 for t, f in enumerate(features) if t > 0]
    return float(np.mean(sims))


def subject_features(frame: np.ndarray) -> np.ndarray:
    """Proxy for DINO subject features: a hue x saturation histogram of the saturated (object) pixels
    plus an 8 x 8 map of where they are."""
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    fg = (hsv[..., 1] > 85) & (hsv[..., 2] > 60)
    hist = cv2.calcHist([hsv], [0, 1], fg.astype(np.uint8), [18, 4], [0, 180, 0, 256]).ravel()
    where = cv2.resize(fg.astype(np.float32), (8, 8), interpolation=cv2.INTER_AREA).ravel()
    return np.concatenate([hist / (hist.sum() + 1e-8), where / (where.sum() + 1e-8)])


def background_features(frame: np.ndarray) -> np.ndarray:
    """Proxy for CLIP background features: the frame blurred to 8 x 8, with mean removed per channel."""
    small = cv2.resize(frame, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean(axis=(0, 1))).ravel() + 1e-3 * small.ravel()


def subject_consistency_proxy(frames: np.ndarray) -> float:
    return _vbench_consistency([subject_features(f) for f in frames])


def background_consistency_proxy(frames: np.ndarray) -> float:
    return _vbench_consistency([background_features(f) for f in frames])


def sharpness(frames: np.ndarray) -> float:
    """Variance of the Laplacian of the grey frames (pixel^2): low when blurry."""
    return float(np.mean([cv2.Laplacian(g, cv2.CV_32F).var() for g in _gray(frames)]))


def colourfulness(frames: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness, averaged over frames."""
    values = []
    for f in frames.astype(np.float32):
        rg = f[..., 0] - f[..., 1]
        yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
        values.append(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    return float(np.mean(values))


def exposure(frames: np.ndarray) -> float:
    """Share of pixels neither crushed (< 5) nor blown (> 250), over all frames."""
    gray = _gray(frames)
    return float(((gray > 5) & (gray < 250)).mean())
