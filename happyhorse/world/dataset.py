"""PyTorch datasets over the world: an endless, seeded stream of captioned clips with sound."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .sample import WorldConfig, make_clip


class WorldDataset(Dataset):
    """Clip i of a split is `make_clip(first_seed + i, split)`: the data set is its seeds.

    Items are dicts: video uint8 [T, H, W, 3], audio float32 [C, N], caption (str), seed (int).
    Ground-truth records are left out (they cost time and do not batch); `make_clip` gives them.
    """

    def __init__(self, length: int, split: str = "train", config: WorldConfig | None = None, first_seed: int = 0):
        if length < 1:
            raise ValueError(f"length: must be >= 1, got {length}")
        self.length, self.split, self.first_seed = int(length), split, int(first_seed)
        self.config = config or WorldConfig()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        seed = self.first_seed + index
        clip = make_clip(seed, self.split, self.config, ground_truth=False)
        return {
            "video": torch.from_numpy(clip.frames),
            "audio": torch.from_numpy(clip.audio),
            "caption": clip.caption,
            "seed": seed,
        }
