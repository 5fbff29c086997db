"""Arena ratings on simulated voters with known model strengths.

Honest voters vote by the Bradley–Terry law of the true ratings (ties 10 % of the time) and answer
gold battles right 95 % of the time. Adversarial voters (a share of all voters, each voting as often
as an honest one) try to move the top 3: "flip" always votes for the truly weaker model, "promote"
always votes for one target model (the true #4) and otherwise for the weaker model. They answer gold
battles correctly (a careful adversary), so only the sequential outlier test can catch them.

Reported per scenario over `--seeds` repetitions: how often the fitted order equals the true order,
the mean Kendall tau, how often the top 3 (in order) equals the true top 3, raw and with the arena's
defences (per-voter cap, gold weights, outlier test).

    python bench/arena_simulation.py --seeds 20 --json bench/results_arena_simulation.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.stats import kendalltau

from happyhorse.arena.integrity import defend
from happyhorse.arena.ratings import ELO_PER_NAT, Votes, fit_bt


def simulate(seed: int, models: int, voters: int, votes_per_voter: int, adversarial: float, kind: str, gap: float):
    rng = np.random.default_rng(seed)
    true = 1000.0 + gap * (models - 1 - np.arange(models))  # model 0 is the best
    theta = (true - true.mean()) / ELO_PER_NAT
    n_bad = int(round(adversarial * voters))
    names = [f"voter{k}" for k in range(voters)]
    bad = set(names[:n_bad])
    target = 3
    a_list, b_list, s_list, who = [], [], [], []
    gold = {}
    order = rng.permutation(np.repeat(np.arange(voters), votes_per_voter))  # interleave voters in time
    for v in order:
        a = int(rng.integers(models))
        b = int((a + rng.integers(1, models)) % models)
        voter = names[v]
        if voter in bad:
            if kind == "promote" and target in (a, b):
                s = 1.0 if a == target else 0.0
            else:
                s = 1.0 if true[a] < true[b] else 0.0
        elif rng.random() < 0.1:
            s = 0.5
        else:
            s = float(rng.random() < 1.0 / (1.0 + np.exp(-(theta[a] - theta[b]))))
        a_list.append(a)
        b_list.append(b)
        s_list.append(s)
        who.append(voter)
    for voter in names:
        answered = max(1, votes_per_voter // 10)
        correct = answered if voter in bad else int(rng.binomial(answered, 0.95))
        gold[voter] = (correct, answered)
    return [f"m{k}" for k in range(models)], np.array(a_list), np.array(b_list), np.array(s_list), who, gold, bad


def order_stats(theta: np.ndarray) -> tuple[bool, float, bool]:
    fitted = np.argsort(-theta, kind="stable")
    truth = np.arange(len(theta))
    tau = kendalltau(-theta, truth).statistic
    return bool(np.array_equal(fitted, truth)), float(tau), bool(np.array_equal(fitted[:3], truth[:3]))


def run(args) -> dict:
    results = {}
    scenarios = [("honest", 0.0, "flip")] + [
        (f"{kind} {args.adversarial:.0%}", args.adversarial, kind) for kind in ("flip", "promote")
    ]
    for label, share, kind in scenarios:
        raw, defended, caught = [], [], []
        for seed in range(args.seeds):
            names, a, b, s, who, gold, bad = simulate(
                seed, args.models, args.voters, args.votes_per_voter, share, kind, args.gap
            )
            raw.append(order_stats(fit_bt(Votes(names, a, b, s))))
            counted, report = defend(names, a, b, s, who, gold)
            defended.append(order_stats(fit_bt(counted)))
            flagged = {v for v, r in report.items() if r["flagged"]}
            caught.append((len(flagged & bad) / max(1, len(bad)), len(flagged - bad) / max(1, len(report) - len(bad))))
        summary = {}
        for name, stats in (("raw", raw), ("defended", defended)):
            arr = np.array(stats, dtype=float)
            summary[name] = {
                "exact_order": float(arr[:, 0].mean()),
                "kendall_tau": round(float(arr[:, 1].mean()), 4),
                "top3_unchanged": float(arr[:, 2].mean()),
            }
        caught = np.array(caught)
        summary["adversaries_flagged"] = round(float(caught[:, 0].mean()), 4)
        summary["honest_flagged"] = round(float(caught[:, 1].mean()), 4)
        results[label] = summary
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--voters", type=int, default=200)
    parser.add_argument("--votes-per-voter", type=int, default=30)
    parser.add_argument("--adversarial", type=float, default=0.10)
    parser.add_argument("--gap", type=float, default=50.0, help="true rating gap between neighbours (points)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run(args)
    out = {"settings": vars(args), "results": results, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            f.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
