"""Gold battles: checks with a known answer that weigh each voter (integrity.py). An "identical" battle
shows a clip beside its re-encoded twin (answer: tie); a "broken" one beside a deliberately broken copy
(answer: the intact side). Derived clips are made once and cached in the media directory."""

from __future__ import annotations

import hashlib

from ..media import Clip, read_video
from .clips import broken, normalise, write_normalised
from .store import Battle, new_id, now


def gold_battle(arena, clips, category: str, voter: str, rng) -> Battle:
    clip, entry, path = clips[int(rng.integers(len(clips)))]
    kind = "identical" if rng.random() < 0.5 else "broken"
    # "identical" shows the clip beside its re-encoded twin: the same picture, not the same bytes
    left_path, right_path = (path, twin_path(arena, path)) if rng.random() < 0.5 else (twin_path(arena, path), path)
    expect = "tie"
    if kind == "broken":
        bad = broken_path(arena, path)
        if rng.random() < 0.5:
            left_path, right_path, expect = path, bad, "left"
        else:
            left_path, right_path, expect = bad, path, "right"
    return Battle(
        id=new_id(),
        created_at=now(),
        category=category,
        prompt_id=clip.prompt_id,
        left_entry=entry.id,
        right_entry=entry.id,
        left_path=left_path,
        right_path=right_path,
        gold=kind,
        gold_expect=expect,
        voter=voter,
        min_seconds=arena.format.seconds * arena.rules.min_watch_fraction,
    )


def _derived(arena, kind: str, path: str, make) -> str:
    """A clip made from a normalised clip once and cached in the media dir (`KIND-of-PATH.txt` names it)."""
    link = arena.media_dir / f"{kind}-of-{path}.txt"
    if link.is_file() and (arena.media_dir / link.read_text().strip()).is_file():
        return link.read_text().strip()
    target = make(read_video(arena.media_dir / path))
    link.write_text(target)
    return target


def twin_path(arena, path: str) -> str:
    """A second encoding of a normalised clip: identical gold battles show the clip beside it, so that
    a script comparing the two files' bytes cannot tell them apart from a real pair and answer "tie"
    without watching."""

    def twin(clip: Clip) -> str:
        target = write_normalised(clip, arena.media_dir).name  # a second generation: other bytes
        if target == path:  # the encoder reproduced its input exactly: nudge one pixel level
            frames = clip.frames.copy()
            frames[0, 0, 0, 0] ^= 1
            target = write_normalised(Clip(frames, clip.fps, clip.audio, clip.sample_rate), arena.media_dir).name
        return target

    return _derived(arena, "twin", path, twin)


def broken_path(arena, path: str) -> str:
    """The deliberately broken copy of a normalised clip."""
    seed = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16)

    def broken_copy(clip: Clip) -> str:
        made = normalise(broken(clip, seed=seed), arena.format, clip.audio is not None)
        return write_normalised(made, arena.media_dir).name

    return _derived(arena, "broken", path, broken_copy)
