"""The arena's published rules and what it refuses: the errors (with the HTTP status the web layer
answers with), the stored `Rules`, stealth commitments, the boards' categories."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from . import CATEGORIES
from .integrity import DEFAULT_ALPHA, DEFAULT_CAP
from .ratings import BoardSettings
from .store import dumps

CODENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AUTO_JUDGE = "auto:eval-suite"


class ArenaError(ValueError):
    """A request the arena refuses; `status` is the HTTP status the web layer answers with."""

    status = 400


class NotFound(ArenaError):
    status = 404


class Conflict(ArenaError):
    status = 409


class Forbidden(ArenaError):
    status = 403


class RateLimited(ArenaError):
    status = 429


@dataclass
class Rules:
    """The arena's published rules, stored in the database so every process applies the same ones."""

    gold_rate: float = 0.1  # share of battles that are gold checks
    min_watch_fraction: float = 0.9  # a vote must come at least this share of the clip length after serving
    votes_per_hour: int = 120  # per voter, web votes and gold answers together
    new_voters_per_hour: int = 20  # voter cookies handed to one client address (scripts minting voters)
    prompts_per_hour: int = 10  # user prompts from one client address (each is rendered by every entry)
    voter_cap: int = DEFAULT_CAP  # counted votes per voter and board
    outlier_alpha: float = DEFAULT_ALPHA
    min_share: float = 0.5  # each model gets at least this fraction of its fair share of recent battles
    min_votes: int = 20
    preliminary_width: float = 100.0
    rounds: int = 200
    anchor: str | None = None

    def __post_init__(self):
        checks = {
            "gold_rate": 0 <= self.gold_rate <= 0.5,
            "min_watch_fraction": 0 <= self.min_watch_fraction <= 2,
            "votes_per_hour": self.votes_per_hour >= 1,
            "new_voters_per_hour": self.new_voters_per_hour >= 1,
            "prompts_per_hour": self.prompts_per_hour >= 0,
            "voter_cap": self.voter_cap >= 1,
            "outlier_alpha": 0 < self.outlier_alpha < 1,
            "min_share": 0 <= self.min_share <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: {getattr(self, name)!r} is out of range")
        BoardSettings(self.min_votes, self.preliminary_width, self.rounds)


def commitment(salt: str, identity: dict) -> str:
    """sha256 of the salt and the identity's canonical JSON: binding (the identity cannot change later)
    and hiding (the random 128-bit salt keeps guessable identities from being tested against it)."""
    return hashlib.sha256((salt + "\n" + dumps(identity)).encode()).hexdigest()


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise ArenaError(f"category: must be one of {', '.join(CATEGORIES)}, got {category!r}")
    return category
