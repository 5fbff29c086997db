"""Votes from elsewhere: a CSV of model_a, model_b, winner, voter, category (optional id, judge), checked
row by row and written in one transaction."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from . import CATEGORIES
from .rules import CODENAME, ArenaError
from .store import WINNERS, Entry, Vote, dumps

WINNER_ALIASES = {
    "model_a": "model_a",
    "a": "model_a",
    "left": "model_a",
    "model_b": "model_b",
    "b": "model_b",
    "right": "model_b",
    "tie": "tie",
    "both_bad": "both_bad",
    "tie (bothbad)": "both_bad",
    "bothbad": "both_bad",
}


def import_votes(arena, path: str | Path, source: str | None = None) -> dict:
    """Add votes from a CSV (columns model_a, model_b, winner, voter, category; optional id, judge).

    All rows are checked first and written in one transaction: a bad row leaves the database as it was.
    winner: model_a | model_b | tie | both_bad (also a, b, left, right, 'tie (bothbad)', or either name).
    Unknown model names become `external` entries. Re-importing a file adds nothing: each row's key is
    its `id` within `source` (default: the file's name; two exports that both number their rows from 1
    are two sources) when given, else its content and how many identical rows came before it.
    """
    path = Path(path)
    source = source or path.name
    if not path.is_file():
        raise ArenaError(f"FILE: no such file: {path}")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        required = ("model_a", "model_b", "winner", "voter", "category")
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ArenaError(f"FILE: {path} lacks column(s) {', '.join(missing)}; required: {', '.join(required)}")
        rows = list(reader)
    errors, parsed, occurrences = [], [], Counter()
    for line, row in enumerate(rows, start=2):
        a, b = (row.get("model_a") or "").strip(), (row.get("model_b") or "").strip()
        raw_winner = (row.get("winner") or "").strip()
        winner = WINNER_ALIASES.get(raw_winner.lower()) or (
            "model_a" if raw_winner == a else "model_b" if raw_winner == b else None
        )
        category = (row.get("category") or "").strip()
        voter = (row.get("voter") or "").strip()
        judge = (row.get("judge") or "human").strip() or "human"
        problems = []
        for name, value in (("model_a", a), ("model_b", b)):
            if not CODENAME.match(value):
                problems.append(f"{name} {value!r} is not a valid name (letters, digits, _ . -)")
        if a == b:
            problems.append("model_a and model_b are the same")
        if winner is None:
            problems.append(f"winner {raw_winner!r} must be one of {', '.join(WINNERS)} or a model's name")
        if category not in CATEGORIES:
            problems.append(f"category {category!r} must be one of {', '.join(CATEGORIES)}")
        if not voter:
            problems.append("voter is empty")
        if problems:
            errors.append(f"line {line}: " + "; ".join(problems))
            continue
        content = dumps([a, b, winner, voter, category, judge])
        occurrences[content] += 1
        key_source = f"{source}\0id:{row['id']}" if row.get("id") else f"{content}#{occurrences[content]}"
        key = hashlib.sha256(f"import:{key_source}".encode()).hexdigest()
        parsed.append((a, b, winner, voter, category, judge, key))
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ArenaError(f"FILE: {path}: " + " | ".join(errors[:5]) + more)
    created, duplicates, imported = [], 0, 0
    with arena.Session.begin() as s:
        entries = {e.codename: e for e in s.scalars(select(Entry))}
        keys = set(s.scalars(select(Vote.dedupe_key).where(Vote.dedupe_key.is_not(None))))
        for a, b, winner, voter, category, judge, key in parsed:
            if key in keys:
                duplicates += 1
                continue
            for name in (a, b):
                if name not in entries:
                    entries[name] = Entry(codename=name, kind="external", source=f"imported from {path.name}")
                    s.add(entries[name])
                    created.append(name)
            ea, eb = entries[a], entries[b]
            if all(e.stealth and e.revealed_at is None for e in (ea, eb)):
                raise ArenaError(f"FILE: {path}: a vote between two sealed stealth entries ({a}, {b}) is refused")
            s.flush()
            s.add(
                Vote(
                    entry_a=ea.id,
                    entry_b=eb.id,
                    winner=winner,
                    voter=arena.voter_id(voter, "import"),
                    category=category,
                    judge=judge,
                    source="import",
                    dedupe_key=key,
                )
            )
            keys.add(key)
            imported += 1
    return {"rows": len(parsed), "imported": imported, "duplicates": duplicates, "new_entries": created}
