"""Vote integrity: per-voter caps, gold-battle reliability, and a sequential outlier test.

Gold battles are served like any other but their answer is known: two identical clips expect a tie
(or "both bad"), a clip against a deliberately broken copy of itself expects the intact one to win.
They never enter the ratings; they estimate each voter's reliability r as the posterior mean of a
Beta(GOLD_PRIOR) prior updated with the voter's gold answers. A voter's weight in the fit falls
linearly from 1 at the prior mean to 0 at r = 0.5 (a coin-flipper carries no information), and a
voter whose r is below FLAG_RELIABILITY after MIN_GOLD answers is flagged and not counted.

The outlier test follows FastChat's anomalous-user detection in spirit: each of a voter's votes gets
a p-value under the current ratings (how surprising is this outcome for this pair?), and Fisher's
method combines the first n of them at checkpoints n = 5, 10, 20, 40, ...; a voter is flagged when
any checkpoint's combined p-value falls below alpha / (number of checkpoints), a Bonferroni bound
over the looks, so testing repeatedly as votes arrive keeps the false-alarm rate at most alpha.
The per-vote p-value sums the probabilities of every outcome no more likely than the observed one,
which is conservative (super-uniform) under the null, so an honest voter is flagged even less often.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

GOLD_PRIOR = (4.0, 1.0)  # Beta prior on gold accuracy: mean 0.8, worth 5 answers
FLAG_RELIABILITY = 0.55
MIN_GOLD = 3
CHECKPOINTS = (5, 10, 20, 40, 80, 160, 320, 640, 1280)
DEFAULT_ALPHA = 1e-3
DEFAULT_CAP = 300  # counted votes per voter and board
OUTLIER_ROUNDS = 4


def gold_correct(expect: str, winner: str) -> bool:
    """Whether a gold answer is right: expect is "tie" (identical clips) or the side that must win."""
    if expect == "tie":
        return winner in ("tie", "both_bad")
    return winner == expect


def reliability(correct: int, answered: int) -> float:
    """Posterior mean accuracy on gold battles."""
    a, b = GOLD_PRIOR
    return (correct + a) / (answered + a + b)


def gold_weight(correct: int, answered: int) -> tuple[float, bool]:
    """(weight in the fit, flagged) of a voter from their gold record."""
    r = reliability(correct, answered)
    prior = GOLD_PRIOR[0] / sum(GOLD_PRIOR)
    weight = float(np.clip((r - 0.5) / (prior - 0.5), 0.0, 1.0))
    flagged = answered >= MIN_GOLD and r < FLAG_RELIABILITY
    return (0.0 if flagged else weight), flagged


def cap_mask(voters: list[str], cap: int = DEFAULT_CAP) -> np.ndarray:
    """True for each vote within its voter's first `cap` (votes are given in time order)."""
    seen: dict[str, int] = defaultdict(int)
    keep = np.zeros(len(voters), dtype=bool)
    for k, voter in enumerate(voters):
        seen[voter] += 1
        keep[k] = seen[voter] <= cap
    return keep


def vote_scores(theta: np.ndarray, a: np.ndarray, b: np.ndarray, s: np.ndarray, tie_rate: float):
    """Per vote: (score contribution, its variance) of the test that the voter follows the ratings.

    Give each voter a slope β: P(a wins | not a tie) = σ(β (θa - θb)). An honest voter has β = 1;
    a random one β = 0, a contrarian β < 0. The score of β at 1 is Σ Δθ (s - E s) with
    Δθ = θa - θb, E s = (1 - t) σ(Δθ) + t / 2 and Var s = (1 - t) σ(Δθ) + t / 4 - (E s)²; ties count
    as half a win here as in the fit.
    """
    delta = theta[a] - theta[b]
    p = 1.0 / (1.0 + np.exp(-delta))
    expect = (1.0 - tie_rate) * p + 0.5 * tie_rate
    var = (1.0 - tie_rate) * p + 0.25 * tie_rate - expect**2
    return delta * (s - expect), delta**2 * var


def sequential_outliers(
    voters: list[str], score: np.ndarray, var: np.ndarray, alpha: float = DEFAULT_ALPHA
) -> dict[str, tuple[bool, float]]:
    """voter -> (flagged, smallest one-sided p-value over the checkpoints reached).

    At each checkpoint n the voter's first n votes give z = Σ score / sqrt(Σ Var); a voter whose votes
    go against the ratings far more than chance allows has a very negative z.
    """
    from scipy.stats import norm

    by_voter: dict[str, list[int]] = defaultdict(list)
    for k, voter in enumerate(voters):
        by_voter[voter].append(k)
    threshold = alpha / len(CHECKPOINTS)
    out = {}
    for voter, rows in by_voter.items():
        total = np.cumsum(score[rows])
        spread = np.sqrt(np.maximum(np.cumsum(var[rows]), 1e-12))
        best = 1.0
        for n in CHECKPOINTS:
            if n > len(rows):
                break
            best = min(best, float(norm.cdf(total[n - 1] / spread[n - 1])))
        out[voter] = (best < threshold, best)
    return out


def defend(
    names: list[str],
    a: np.ndarray,
    b: np.ndarray,
    s: np.ndarray,
    voters: list[str],
    gold: dict[str, tuple[int, int]] | None = None,
    cap: int = DEFAULT_CAP,
    alpha: float = DEFAULT_ALPHA,
    outlier_test: bool = True,
):
    """The votes as counted: capped per voter, weighted by gold reliability, outliers removed.

    Returns (Votes with weights, report) where report maps voter -> {votes, counted, gold_correct,
    gold_answered, reliability, weight, outlier_p, flagged, reason}.
    """
    from .ratings import Votes, fit_bt

    gold = gold or {}
    a, b, s = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), np.asarray(s, dtype=np.float64)
    keep = cap_mask(voters, cap)
    report: dict[str, dict] = {}
    for voter in dict.fromkeys(voters):
        correct, answered = gold.get(voter, (0, 0))
        weight, flagged = gold_weight(correct, answered)
        report[voter] = {
            "votes": 0,
            "counted": 0,
            "gold_correct": correct,
            "gold_answered": answered,
            "reliability": round(reliability(correct, answered), 4),
            "weight": weight,
            "outlier_p": None,
            "flagged": flagged,
            "reason": "gold battles" if flagged else None,
        }
    for voter in voters:
        report[voter]["votes"] += 1
    weight = np.array([report[v]["weight"] for v in voters], dtype=np.float64) * keep
    for _ in range(OUTLIER_ROUNDS if outlier_test else 0):
        # Each round refits the ratings without the voters flagged so far, which sharpens the test for
        # the rest; flags are never withdrawn, so the rounds end.
        live = weight > 0
        if not live.any():
            break
        theta = fit_bt(Votes(names, a[live], b[live], s[live], weight[live]))
        tie_rate = float(np.clip(np.sum(weight * (s == 0.5)) / weight.sum(), 0.01, 0.98))
        live_voters = [v for v, k in zip(voters, live, strict=True) if k]
        score, var = vote_scores(theta, a[live], b[live], s[live], tie_rate)
        new_flags = 0
        for voter, (flagged, p) in sequential_outliers(live_voters, score, var, alpha).items():
            report[voter]["outlier_p"] = p
            if flagged and not report[voter]["flagged"]:
                report[voter].update(flagged=True, weight=0.0, reason="sequential outlier test")
                new_flags += 1
        weight = np.array([report[v]["weight"] for v in voters], dtype=np.float64) * keep
        if not new_flags:
            break
    for voter, w in zip(voters, weight, strict=True):
        report[voter]["counted"] += int(w > 0)
    live = weight > 0
    return Votes(names, a[live], b[live], s[live], weight[live]), report
