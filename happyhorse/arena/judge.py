"""Auto-judge: battles decided by the evaluation suite's metrics, to seed a board before people vote.

Each clip (as voters see it, normalised) gets the mean of its metric scores (each in [0, 1]; world
metrics when its prompt is a world caption, temporal ones always); the higher mean wins, a gap under
TIE_MARGIN is a tie. The votes carry judge "auto:eval-suite" and a voter of their own, so they form a
separate board and never enter the human one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sqlalchemy import select

from ..media import read_video
from .rules import AUTO_JUDGE, ArenaError
from .store import Prompt, Vote

TIE_MARGIN = 0.01


def clip_score(path, prompt: str) -> float:
    from ..eval.metrics import evaluate_clip
    from ..eval.world import facts_from_caption

    clip = read_video(path)
    facts = facts_from_caption(prompt)
    metrics, _ = evaluate_clip(clip.frames, clip.fps, clip.audio, clip.sample_rate, facts)
    scores = [m["score"] for m in metrics.values() if m.get("score") is not None and np.isfinite(m["score"])]
    return float(np.mean(scores)) if scores else 0.0


def seed_battles(arena, battles: int, category: str, seed: int = 0) -> dict:
    """Judge `battles` random pairs (of entries sharing a prompt in `category`) by the metrics."""
    rng = np.random.default_rng(seed)
    cache: dict[str, float] = {}
    outcomes = Counter()
    with arena.Session() as s:
        clips = arena._eligible_clips(s, category)
        prompts = {p.id: p.text for p in s.scalars(select(Prompt))}
    by_prompt: dict[int, list] = {}
    for clip, entry, path in clips:
        by_prompt.setdefault(clip.prompt_id, []).append((entry.id, entry.stealth and entry.revealed_at is None, path))
    playable = {p: v for p, v in by_prompt.items() if len(v) >= 2}
    if not playable:
        raise ArenaError(f"category: no two entries share a prompt in {category}")
    keys = sorted(playable)
    with arena.Session.begin() as s:
        for _ in range(battles):
            prompt_id = keys[int(rng.integers(len(keys)))]
            options = playable[prompt_id]
            x, y = rng.choice(len(options), size=2, replace=False)
            (ea, sealed_a, pa), (eb, sealed_b, pb) = options[x], options[y]
            if sealed_a and sealed_b:
                continue
            for path in (pa, pb):
                if path not in cache:
                    cache[path] = clip_score(arena.media_dir / path, prompts[prompt_id])
            gap = cache[pa] - cache[pb]
            winner = "tie" if abs(gap) < TIE_MARGIN else ("model_a" if gap > 0 else "model_b")
            outcomes[winner] += 1
            s.add(
                Vote(
                    entry_a=ea,
                    entry_b=eb,
                    winner=winner,
                    voter="auto-judge",
                    category=category,
                    judge=AUTO_JUDGE,
                    source="seed",
                )
            )
    return {"battles": sum(outcomes.values()), "outcomes": dict(outcomes)}
