"""Token positions of the packed [video | audio | text] sequence, as (t, h, w) rows for RoPE."""

from __future__ import annotations

import torch


def video_positions(grid: tuple[int, int, int], patch_t: int) -> torch.Tensor:
    """(t, h, w) of each video latent token [t*h*w, 3]; t in units of pt frames, frame 0 at 0."""
    t, h, w = grid
    centres = torch.tensor([0.0] + [((k - 1) * patch_t + 1 + (patch_t - 1) / 2) / patch_t for k in range(1, t)])
    tt, hh, ww = torch.meshgrid(
        centres, torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)


def audio_positions(num_tokens: int, seconds_per_token: float, fps: float, patch_t: int, grid_hw) -> torch.Tensor:
    """Audio tokens sit on the video's time axis at their centre time, in the middle of the frame."""
    centre = (torch.arange(num_tokens, dtype=torch.float32) + 0.5) * seconds_per_token * fps / patch_t
    h, w = grid_hw
    return torch.stack([centre, torch.full_like(centre, (h - 1) / 2), torch.full_like(centre, (w - 1) / 2)], -1)


def sequence_positions(grid, num_audio, num_text, video_codec, audio_codec, fps, extra=None) -> torch.Tensor:
    """Positions of the packed [video | audio | text] sequence; text rows are zero (not rotated). `extra`
    [K, 3]: rows of clean still tokens appended after the clip's video tokens (happyhorse/conditioning.py)."""
    return torch.cat(
        [
            video_positions(grid, video_codec.patch_t),
            torch.zeros(0, 3) if extra is None else extra,
            audio_positions(num_audio, audio_codec.seconds_per_token, fps, video_codec.patch_t, grid[1:]),
            torch.zeros(num_text, 3),
        ]
    )
