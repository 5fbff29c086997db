"""Matchmaking: which two models meet next.

Active sampling: the Bradley–Terry fit's covariance C is the inverse of its Fisher information
H = Σ_pairs n_ij p_ij (1 - p_ij) d_ij d_ijᵀ + PRIOR · I (d_ij = e_i - e_j; the weak prior keeps models
without votes finite and very uncertain). One more vote on (i, j) adds p(1 - p) d dᵀ to H, which by
Sherman–Morrison lowers the summed variance of all ratings by

    gain_ij = p(1 - p) ‖C d‖² / (1 + p(1 - p) dᵀ C d).

A pair is drawn with probability proportional to its gain (not always the argmax, so that the next
voters do not all get the same pair while the first vote is pending). Every model whose share of recent
battles fell below `min_share` is served first, partnered by gain, so no listed model is starved.
"""

from __future__ import annotations

import numpy as np

PRIOR = 0.05  # prior precision on θ: a model with no votes has a standard deviation of ~4.5 (≈ 780 points)


def information(n: int, i: np.ndarray, j: np.ndarray, total: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Fisher information of θ from `total` votes on each pair (i, j), plus the prior."""
    p = 1.0 / (1.0 + np.exp(-(theta[i] - theta[j])))
    c = total * p * (1.0 - p)
    hess = np.diag(np.bincount(i, weights=c, minlength=n) + np.bincount(j, weights=c, minlength=n) + PRIOR)
    np.add.at(hess, (i, j), -c)
    np.add.at(hess, (j, i), -c)
    return hess


def pair_gains(cov: np.ndarray, theta: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Reduction of the summed rating variance from one more vote on each pair."""
    gains = np.zeros(len(pairs))
    for k, (i, j) in enumerate(pairs):
        d = np.zeros(len(theta))
        d[i], d[j] = 1.0, -1.0
        p = 1.0 / (1.0 + np.exp(-(theta[i] - theta[j])))
        q = p * (1.0 - p)
        cd = cov @ d
        gains[k] = q * float(cd @ cd) / (1.0 + q * float(d @ cd))
    return gains


def choose_pair(
    n: int,
    pairs: list[tuple[int, int]],
    i: np.ndarray,
    j: np.ndarray,
    total: np.ndarray,
    theta: np.ndarray,
    recent: np.ndarray,
    min_share: float,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Pick one of the allowed `pairs` (model indices into n).

    i, j, total: votes so far per pair; theta: current strengths; recent: battles each model had in the
    recent window; min_share: the smallest share of recent battles each model is owed.
    """
    if not pairs:
        raise ValueError("pairs: no two models can meet (need two entries with clips of one prompt)")
    in_play = sorted({m for pair in pairs for m in pair})
    total_recent = float(recent[in_play].sum())
    if total_recent > 0 and min_share > 0:
        shares = recent[in_play] / max(total_recent / 2.0, 1.0)  # each battle has two sides
        starved = [m for m, share in zip(in_play, shares, strict=True) if share < min_share]
        if starved:
            neediest = min(starved, key=lambda m: recent[m])
            pairs = [pair for pair in pairs if neediest in pair]
    cov = np.linalg.inv(information(n, i, j, total, theta))
    gains = np.maximum(pair_gains(cov, theta, pairs), 1e-12)
    return pairs[int(rng.choice(len(pairs), p=gains / gains.sum()))]
