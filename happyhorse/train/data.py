"""World clips for training steps, a pure function of (seed, step, sample index).

So a resumed run sees the clips it would have seen, N processes with batch B see the clips one
process with batch N x B sees, and any number of loader workers deliver the same steps in order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..world import WorldConfig, make_clip
from ..world.sample import KINDS


def check_kinds(kinds: dict[str, float]) -> dict[str, float]:
    """A mix of world scene kinds {kind: weight}, normalised to sum 1; a ValueError names what is wrong."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"world_kinds: keys must be among {', '.join(KINDS)}, got {sorted(kinds) or 'none'}")
    if any(not w >= 0 for w in kinds.values()) or sum(kinds.values()) <= 0:
        raise ValueError(f"world_kinds: weights must be >= 0 with a positive sum, got {dict(kinds)}")
    total = float(sum(kinds.values()))
    return {k: float(w) / total for k, w in kinds.items()}


def clip_kind(clip_seed: int, kinds: dict[str, float]) -> str:
    """The scene kind of a training clip: a pure function of its world seed and the mix."""
    names = sorted(kinds)
    if len(names) == 1:
        return names[0]
    return str(np.random.default_rng([clip_seed, 13]).choice(names, p=[kinds[k] for k in names]))


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one training sample, from (run seed, step, global sample index)."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def condition_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of a sample's further conditions (a clip to continue, other frames), apart from
    `sample_generator`'s stream so that adding them moves nothing a run drew before; index -1: the step's."""
    state = np.random.SeedSequence([seed, step, index + 1, 43]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def clip_seed(seed: int, step: int, index: int, clips_per_step: int) -> int:
    """World seed of a training clip: every (step, index) sees a new clip, for 2^31 clips."""
    return (seed * 7919 + step * clips_per_step + index) % (2**31)


class StepBatches(IterableDataset):
    """World clips for steps [start, end) of one process: rank r takes samples [rB, (r+1)B).

    With several loader workers, worker w renders steps start + w, start + w + W, ...; the loader
    takes one batch from each worker in turn, so steps still arrive in order, each once. With
    `clip_repeats` R, sample i shows clip i // R (its noise, noise level and conditions are still its
    own): rendering is what limits a GPU run, and a clip seen at R noise levels is not R clips' cost.
    `kinds` mixes the world's scene kinds ({"physics": 1} when None: the clips runs always saw);
    `references` adds each clip's subject rendered on its own (`reference`, uint8 [B, H, W, 3]).
    """

    def __init__(
        self,
        world: WorldConfig,
        batch_size: int,
        seed: int,
        start: int,
        end: int,
        rank: int = 0,
        world_size: int = 1,
        clip_repeats: int = 1,
        kinds: dict[str, float] | None = None,
        references: bool = False,
    ):
        self.world, self.batch_size, self.seed, self.clip_repeats = world, batch_size, seed, clip_repeats
        self.kinds = check_kinds(kinds or {"physics": 1.0})
        self.references = references
        self.start, self.end, self.rank, self.world_size = start, end, rank, world_size

    def __iter__(self):
        b, r = self.batch_size, self.clip_repeats
        info = get_worker_info()
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.end, stride):
            indices = range(self.rank * b, (self.rank + 1) * b)
            clips = {}
            for i in indices:
                if i // r not in clips:
                    seed = clip_seed(self.seed, step, i // r, b * self.world_size // r)
                    kind = clip_kind(seed, self.kinds)
                    clips[i // r] = make_clip(
                        seed, "train", self.world, kind=kind, ground_truth=False, references=self.references
                    )
            shown = [clips[i // r] for i in indices]
            extra = {}
            if self.references:  # the subject of each clip on its own (reference-to-video)
                subjects = [c.meta["references"][c.meta["subject"]] for c in shown]
                extra["reference"] = torch.from_numpy(np.stack(subjects))  # uint8 [B, H, W, 3]
            yield {
                **extra,
                "step": step,
                "indices": list(indices),
                "video": torch.from_numpy(np.stack([c.frames for c in shown])),  # uint8 [B, T, H, W, 3]
                "audio": torch.from_numpy(np.stack([c.audio for c in shown])),  # float32 [B, C, N]
                "captions": [c.caption for c in shown],
            }


def loader(dataset: IterableDataset, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """Batches as the dataset yields them, rendered by `num_workers` spawned processes ahead of the step
    (a forked process that inherits torch's or PyAV's threads can deadlock)."""
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        multiprocessing_context="spawn" if num_workers else None,
        prefetch_factor=2 if num_workers else None,
        pin_memory=pin_memory,
    )
