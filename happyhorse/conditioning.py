"""What a clip is given besides its prompt, as clean tokens of the one sequence: frames at their times,
the frames a clip continues from, subject references.

Latent frame 0 is the first frame alone; latent frame k >= 1 covers frames 1 + pt (k - 1) .. pt k. The
first frame and the frames a clip continues from are whole latent frames: their tokens are given in
place. Any other frame (the last, a keyframe) and a subject reference are single images: each is
encoded as a one-frame latent and appended after the clip's video tokens as extra clean tokens at a
time position of its own: a frame f at t = f / pt (the video axis' units, as `model.positions` places
latent frames), reference r outside the clip at t = -2 - r. Clean tokens carry no noise and no loss;
the samplers re-impose them after every step and the output drops the extra ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Condition:
    """An image the clip shows at `frame_index` (negative counts from the end: -1 is the last frame; frame
    0 is the first frame, as the pipeline's `image`), a clip `video` (uint8 [F, H, W, 3]) to continue (its
    last whole latent frames, 1 + pt k of them, are the output's first), or, with `reference=True`, an
    image of the subject on its own (not a frame of the clip) that the clip should show."""

    image: Any = None  # a path or uint8 [H, W, 3]
    frame_index: int = 0
    video: Any = None  # uint8 [F, H, W, 3]: continue this clip (its frames are the output's first F)
    reference: bool = False

    def __post_init__(self):
        if (self.image is None) == (self.video is None):
            raise ValueError("conditions: each Condition takes exactly one of image or video")
        if self.video is not None and (self.frame_index != 0 or self.reference):
            raise ValueError("conditions: a video condition starts the clip (frame_index 0, not a reference)")
        if isinstance(self.frame_index, bool) or not isinstance(self.frame_index, int | np.integer):
            raise ValueError(f"conditions: frame_index must be an integer, got {self.frame_index!r}")


def frame_time(frame: int, patch_t: int) -> float:
    """A frame's position on the video time axis (latent frame units)."""
    return frame / patch_t


def reference_time(r: int) -> float:
    """Where the r-th subject reference sits on the time axis: before the clip, apart from every frame."""
    return -2.0 - r


def resolve_frame(frame_index: int, num_frames: int) -> int:
    """A frame index in [0, num_frames), from the end if negative; a ValueError names the allowed range."""
    f = frame_index + num_frames if frame_index < 0 else frame_index
    if not 0 <= f < num_frames:
        raise ValueError(
            f"conditions: frame_index {frame_index} is outside the clip's {num_frames} frames "
            f"(allowed: {-num_frames} .. {num_frames - 1})"
        )
    return f


def prefix_latent_frames(num_given: int, patch_t: int) -> int:
    """How many whole latent frames F given frames cover: 1 (frame 0) + one per patch_t frames after it."""
    return 1 + (num_given - 1) // patch_t


def still_tokens(video_codec, images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, K, H, W, 3] -> clean tokens [B, K * h * w, C], each a one-frame latent."""
    b, k = images.shape[:2]
    z = video_codec.encode(images.reshape(b * k, 1, *images.shape[2:]))  # [B K, 1, h, w, C]
    return z.reshape(b, k * z.shape[2] * z.shape[3], z.shape[-1])


def still_positions(times: list[float], grid_hw: tuple[int, int]) -> torch.Tensor:
    """(t, h, w) rows [K * h * w, 3] of K stills at `times`, over the frame's token grid."""
    h, w = grid_hw
    rows = []
    for t in times:
        hh, ww = torch.meshgrid(
            torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
        )
        rows.append(torch.stack([torch.full_like(hh, float(t)), hh, ww], dim=-1).reshape(-1, 3))
    return torch.cat(rows) if rows else torch.zeros(0, 3)
