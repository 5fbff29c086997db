"""Bradley–Terry ratings: maximum likelihood, bootstrap intervals, rank intervals, boards.

Model: P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / SCALE)), the Elo curve, so R = BASE + SCALE / ln 10 * θ
where θ are the natural-log strengths of the logistic (Bradley–Terry) model. The fit maximises

    Σ_k w_k [ s_k log σ(θ_a - θ_b) + (1 - s_k) log σ(θ_b - θ_a) ] - l2 / 2 · Σ_i θ_i²

with s_k = 1 when a won, 0 when b won and **0.5 for a tie: a tie counts as half a win for each side**
("both bad" is a tie too: neither clip was preferred). w_k is the vote's weight (voter reliability).
The tiny `l2` (1e-6 by default, as lmarena's near-unregularised logistic regression) only keeps the
fit finite when a model has won or lost every battle; with real data it moves ratings by < 1e-4 points.

The penalty's gradient forces Σθ = 0, so the fit is centred; the board then shifts every rating by the
same amount so that the **anchor** sits at BASE exactly (a named entry, or the mean when none is named),
which keeps ratings comparable from one day to the next as long as the anchor stays on the board.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

BASE = 1000.0  # the anchor's rating
SCALE = 400.0  # Elo points per factor of 10 in odds
ELO_PER_NAT = SCALE / math.log(10.0)  # ≈ 173.7 rating points per unit of θ
DEFAULT_L2 = 1e-6
MIN_BOOTSTRAP = 100


@dataclass
class BoardSettings:
    """How a board is computed and who gets listed; the defaults are the arena's published rules."""

    min_votes: int = 20  # a model is listed only once this many counted votes include it
    preliminary_width: float = 100.0  # "preliminary" while its 95 % interval is wider than this (points)
    rounds: int = 200  # bootstrap rounds (>= 100)
    anchor: str | None = None  # entry pinned at BASE; None: the mean of the listed and unlisted models
    seed: int = 0  # bootstrap seed, so the same votes always give the same board
    l2: float = DEFAULT_L2

    def __post_init__(self):
        if self.rounds < MIN_BOOTSTRAP:
            raise ValueError(f"rounds: bootstrap needs at least {MIN_BOOTSTRAP} rounds, got {self.rounds}")
        if self.min_votes < 0:
            raise ValueError(f"min_votes: must be >= 0, got {self.min_votes}")
        if self.preliminary_width <= 0:
            raise ValueError(f"preliminary_width: must be > 0 rating points, got {self.preliminary_width}")


@dataclass
class Votes:
    """Counted votes of one board as arrays: model indices a, b; score s of a (1, 0.5, 0); weight w."""

    names: list[str]
    a: np.ndarray
    b: np.ndarray
    s: np.ndarray
    w: np.ndarray = field(default=None)

    def __post_init__(self):
        self.a = np.asarray(self.a, dtype=np.int64)
        self.b = np.asarray(self.b, dtype=np.int64)
        self.s = np.asarray(self.s, dtype=np.float64)
        self.w = np.ones(len(self.a)) if self.w is None else np.asarray(self.w, dtype=np.float64)
        if not (len(self.a) == len(self.b) == len(self.s) == len(self.w)):
            raise ValueError("votes: a, b, s and w must have the same length")
        if len(self.a) and (np.any(self.a == self.b) or max(self.a.max(), self.b.max()) >= len(self.names)):
            raise ValueError("votes: each vote needs two different models among `names`")
        if np.any((self.s != 0) & (self.s != 0.5) & (self.s != 1)):
            raise ValueError("votes: scores must be 1 (a won), 0 (b won) or 0.5 (tie)")


def _aggregate(n: int, a: np.ndarray, b: np.ndarray, s: np.ndarray, w: np.ndarray):
    """Sum the weights and a's weighted score over each unordered pair: the fit's sufficient statistics."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    score_lo = np.where(a == lo, s, 1.0 - s)
    key = lo * n + hi
    keys, inverse = np.unique(key, return_inverse=True)
    total = np.bincount(inverse, weights=w)
    wins = np.bincount(inverse, weights=w * score_lo)
    return keys // n, keys % n, total, wins, inverse, score_lo


def fit_theta(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    total: np.ndarray,
    wins: np.ndarray,
    l2: float = DEFAULT_L2,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> np.ndarray:
    """Newton's method on the aggregated pairs (i beat j `wins` of `total` weighted votes); θ, centred.

    The objective is concave, so Newton with step halving converges from θ = 0 in a few iterations.
    """
    theta = np.zeros(n)
    if n == 0:
        return theta

    def objective(t):
        x = t[i] - t[j]
        return float(np.sum(wins * -np.logaddexp(0, -x) + (total - wins) * -np.logaddexp(0, x))) - 0.5 * l2 * t @ t

    value = objective(theta)
    for _ in range(max_iter):
        x = theta[i] - theta[j]
        p = 1.0 / (1.0 + np.exp(-x))
        r = wins - total * p  # residual of i's score
        grad = np.bincount(i, weights=r, minlength=n) - np.bincount(j, weights=r, minlength=n) - l2 * theta
        c = total * p * (1.0 - p)
        hess = np.diag(np.bincount(i, weights=c, minlength=n) + np.bincount(j, weights=c, minlength=n) + l2)
        np.add.at(hess, (i, j), -c)
        np.add.at(hess, (j, i), -c)
        if l2 == 0:
            hess += 1.0 / n  # the likelihood ignores a common shift; this pins the step's mean at 0
        step = np.linalg.solve(hess, grad)
        if float(np.max(np.abs(grad))) < tol:
            break
        scale = 1.0
        while scale > 1e-8:
            candidate = theta + scale * step
            new_value = objective(candidate)
            if new_value >= value - 1e-12:
                theta, value = candidate, new_value
                break
            scale *= 0.5
        else:
            break
        if float(np.max(np.abs(scale * step))) < tol:
            break
    return theta - theta.mean() if l2 == 0 else theta


def fit_bt(votes: Votes, l2: float = DEFAULT_L2) -> np.ndarray:
    """Maximum-likelihood θ (natural-log strengths, centred) of every model in `votes.names`."""
    n = len(votes.names)
    i, j, total, wins, _, _ = _aggregate(n, votes.a, votes.b, votes.s, votes.w)
    return fit_theta(n, i, j, total, wins, l2)


def to_rating(theta: np.ndarray, anchor_index: int | None = None) -> np.ndarray:
    """θ -> Elo-like points, with the anchor (or the mean) at BASE."""
    shift = theta[anchor_index] if anchor_index is not None else theta.mean()
    return BASE + ELO_PER_NAT * (theta - shift)


def bootstrap(votes: Votes, rounds: int = 200, seed: int = 0, l2: float = DEFAULT_L2) -> np.ndarray:
    """θ refitted on `rounds` resamples (with replacement) of the votes: array [rounds, n]."""
    if rounds < MIN_BOOTSTRAP:
        raise ValueError(f"rounds: bootstrap needs at least {MIN_BOOTSTRAP} rounds, got {rounds}")
    n, m = len(votes.names), len(votes.a)
    i, j, _, _, inverse, score_lo = _aggregate(n, votes.a, votes.b, votes.s, votes.w)
    rng = np.random.default_rng(seed)
    out = np.zeros((rounds, n))
    for r in range(rounds):
        counts = np.bincount(rng.integers(0, m, m), minlength=m) if m else np.zeros(0)
        weight = votes.w * counts
        total = np.bincount(inverse, weights=weight, minlength=len(i))
        wins = np.bincount(inverse, weights=weight * score_lo, minlength=len(i))
        out[r] = fit_theta(n, i, j, total, wins, l2)
    return out


def ranks_of(ratings: np.ndarray) -> np.ndarray:
    """Rank 1 = best, per row of [..., n] ratings (ties broken by order, which ties never reach)."""
    order = np.argsort(-ratings, axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, ratings.shape[-1] + 1)[None].repeat(len(ratings), 0), axis=-1)
    return ranks


def board(votes: Votes, settings: BoardSettings | None = None, counts: dict | None = None) -> list[dict]:
    """One leaderboard: a row per model, best first, listed models before unlisted ones.

    Each row: name, rating, lo/hi (95 % bootstrap percentile interval), rank (1 + the number of models
    whose interval lies wholly above this one's, lmarena's rule), rank_lo/rank_hi (95 % interval of the
    bootstrap ranks), votes / wins / losses / ties (weighted counts as counted), listed, preliminary.
    """
    settings = settings or BoardSettings()
    n = len(votes.names)
    if n == 0:
        return []
    anchor_index = votes.names.index(settings.anchor) if settings.anchor in votes.names else None
    played = np.bincount(votes.a, minlength=n) + np.bincount(votes.b, minlength=n)
    # the scale's zero (without an anchor) and the ranks count listed models only: a new entry with a
    # handful of votes must not move everyone's rating or push a listed model down a rank
    listed = played >= settings.min_votes
    reference = listed if listed.any() else np.ones(n, dtype=bool)
    theta = fit_bt(votes, settings.l2)
    rating = (
        to_rating(theta, anchor_index)
        if anchor_index is not None
        else BASE + ELO_PER_NAT * (theta - theta[reference].mean())
    )
    boot = bootstrap(votes, settings.rounds, settings.seed, settings.l2)
    shift = boot[:, anchor_index] if anchor_index is not None else boot[:, reference].mean(axis=1)
    boot_rating = BASE + ELO_PER_NAT * (boot - shift[:, None])
    lo, hi = np.percentile(boot_rating, [2.5, 97.5], axis=0)
    above = (boot_rating[:, None, :] > boot_rating[:, :, None]) & reference[None, None, :]  # [round, k, j]
    boot_ranks = 1 + above.sum(axis=2)
    rank_lo, rank_hi = np.percentile(boot_ranks, [2.5, 97.5], axis=0)
    wins = np.bincount(votes.a, weights=votes.s == 1, minlength=n) + np.bincount(
        votes.b, weights=votes.s == 0, minlength=n
    )
    ties = np.bincount(votes.a, weights=votes.s == 0.5, minlength=n) + np.bincount(
        votes.b, weights=votes.s == 0.5, minlength=n
    )
    separated = (wins == 0) | (wins == played)
    rows = []
    for k, name in enumerate(votes.names):
        rows.append(
            {
                "name": name,
                "rating": round(float(rating[k]), 4),
                "lo": round(float(lo[k]), 4),
                "hi": round(float(hi[k]), 4),
                "rank": 1 + int(np.sum((lo > hi[k]) & reference)),
                "rank_lo": int(math.floor(rank_lo[k])),
                "rank_hi": int(math.ceil(rank_hi[k])),
                "votes": int(played[k]),
                "wins": int(wins[k]),
                "losses": int(played[k] - wins[k] - ties[k]),
                "ties": int(ties[k]),
                "listed": bool(listed[k]),
                # all wins or all losses: the likelihood has no maximum (only the tiny l2 bounds it) and
                # every bootstrap resample agrees, so its narrow interval means nothing
                "preliminary": bool(hi[k] - lo[k] > settings.preliminary_width or (ties[k] == 0 and separated[k])),
                "anchor": k == anchor_index,
            }
        )
    rows.sort(key=lambda row: (not row["listed"], -row["rating"]))
    return rows


def matrices(votes: Votes) -> tuple[np.ndarray, np.ndarray]:
    """(win rate of row over column with ties as half, battle count) over the raw votes; NaN where unplayed."""
    n = len(votes.names)
    count = np.zeros((n, n))
    score = np.zeros((n, n))
    np.add.at(count, (votes.a, votes.b), 1)
    np.add.at(count, (votes.b, votes.a), 1)
    np.add.at(score, (votes.a, votes.b), votes.s)
    np.add.at(score, (votes.b, votes.a), 1 - votes.s)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, score / np.maximum(count, 1), np.nan)
    return rate, count


BOARD_COLUMNS = ("rank", "codename", "rating", "lo", "hi", "rank_lo", "rank_hi", "votes", "listed", "preliminary")


def board_csv(boards: dict) -> str:
    """Every board's rows (listed, then unlisted) as one CSV, a category column first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["category", *BOARD_COLUMNS])
    for category, result in boards.items():
        for row in result["rows"] + result["unlisted"]:
            writer.writerow([category, *(row[c] for c in BOARD_COLUMNS)])
    return out.getvalue()
