"""The boards (DESIGN.md section 8): Bradley-Terry ratings over the counted votes of one category and
judge, win-rate matrices, and the anonymised dump of every vote."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
from sqlalchemy import Integer, func, select

from . import CATEGORIES
from .integrity import defend
from .ratings import BoardSettings, Votes, board
from .ratings import matrices as win_matrices
from .rules import check_category
from .store import SCORE, Entry, GoldAnswer, Vote

TIE_RULE = "a tie or a 'both bad' vote counts as half a win for each side"


def board_votes(s, category: str, judge: str):
    rows = s.execute(
        select(Vote.entry_a, Vote.entry_b, Vote.winner, Vote.voter)
        .where(Vote.category == category, Vote.judge == judge)
        .order_by(Vote.created_at, Vote.id)
    ).all()
    names_by_id = dict(s.execute(select(Entry.id, Entry.codename)).all())
    used = sorted({e for r in rows for e in r[:2]})
    index = {e: k for k, e in enumerate(used)}
    names = [names_by_id[e] for e in used]
    a = np.array([index[r[0]] for r in rows], dtype=np.int64)
    b = np.array([index[r[1]] for r in rows], dtype=np.int64)
    sc = np.array([SCORE[r[2]] for r in rows], dtype=np.float64)
    voters = [r[3] for r in rows]
    gold = {}
    for voter, correct, answered in s.execute(
        select(GoldAnswer.voter, func.sum(GoldAnswer.correct.cast(Integer)), func.count()).group_by(GoldAnswer.voter)
    ).all():
        gold[voter] = (int(correct or 0), int(answered))
    return names, a, b, sc, voters, gold


def board_settings(arena, **overrides) -> BoardSettings:
    rules = arena.rules
    values = {
        "min_votes": rules.min_votes,
        "preliminary_width": rules.preliminary_width,
        "rounds": rules.rounds,
        "anchor": rules.anchor,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BoardSettings(**values)


def leaderboard(arena, category: str, judge: str = "human", **overrides) -> dict:
    """One board (DESIGN §8): human votes only unless judge names the auto-judge; see ratings.board."""
    check_category(category)
    settings = board_settings(arena, **overrides)
    with arena.Session() as s:
        names, a, b, sc, voters, gold = board_votes(s, category, judge)
        public = {e.codename: e for e in s.scalars(select(Entry))}
        if judge == "human" and len(sc):
            counted, report = defend(
                names, a, b, sc, voters, gold, cap=arena.rules.voter_cap, alpha=arena.rules.outlier_alpha
            )
        else:
            counted, report = Votes(names, a, b, sc), {}
        rows = board(counted, settings) if len(counted.a) else []
        for row in rows:
            entry = public[row.pop("name")]
            row["codename"] = entry.codename
            row["stealth"] = entry.stealth
            row["sealed"] = entry.stealth and entry.revealed_at is None
            identity = json.loads(entry.identity) if entry.identity else None
            row["revealed_as"] = (identity or {}).get("name") if identity else None
            row["active"] = entry.active
    flagged = sum(1 for r in report.values() if r["flagged"])
    down = sum(1 for r in report.values() if 0 < r["weight"] < 1)
    return {
        "category": category,
        "judge": judge,
        "method": "Bradley-Terry maximum likelihood; 95 % bootstrap percentile intervals",
        "ties": TIE_RULE,
        "scale": "400 points = 10x odds; the anchor sits at 1000",
        "anchor": settings.anchor if settings.anchor in [r["codename"] for r in rows] else "mean of all models",
        "settings": asdict(settings),
        "votes": {"total": int(len(sc)), "counted": int(len(counted.a))},
        "voters": {"total": len(set(voters)), "flagged": flagged, "down_weighted": down},
        "rows": [r for r in rows if r["listed"]],
        "unlisted": [r for r in rows if not r["listed"]],
    }


def matrices(arena, category: str, judge: str = "human") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, win-rate matrix, battle-count matrix) over the raw votes of a board."""
    check_category(category)
    with arena.Session() as s:
        names, a, b, sc, _, _ = board_votes(s, category, judge)
    rate, count = win_matrices(Votes(names, a, b, sc))
    return names, rate, count


def votes_dump(arena, category: str | None = None) -> list[dict]:
    """Every vote, anonymised: voters become v1, v2, ... in order of first vote, times become days,
    battles lose their ids; sealed entries appear only under their codenames."""
    with arena.Session() as s:
        query = select(Vote).order_by(Vote.created_at, Vote.id)
        if category:
            query = query.where(Vote.category == check_category(category))
        names = dict(s.execute(select(Entry.id, Entry.codename)).all())
        aliases: dict[str, str] = {}
        out = []
        for k, vote in enumerate(s.scalars(query), start=1):
            alias = aliases.setdefault(vote.voter, f"v{len(aliases) + 1}")
            out.append(
                {
                    "n": k,
                    "category": vote.category,
                    "model_a": names[vote.entry_a],
                    "model_b": names[vote.entry_b],
                    "winner": vote.winner,
                    "voter": alias,
                    "judge": vote.judge,
                    "source": vote.source,
                    "day": vote.created_at.date().isoformat(),
                }
            )
    return out


def categories_with_votes(arena, judge: str = "human") -> list[str]:
    with arena.Session() as s:
        used = set(s.scalars(select(Vote.category).where(Vote.judge == judge).distinct()))
    return [c for c in CATEGORIES if c in used]
