"""Arena ratings: the Bradley–Terry fit against an independent fit, order recovery, robustness to
adversarial voters, matchmaking, and the import-votes / leaderboard commands."""

import csv
import json

import numpy as np
import pytest
from scipy.optimize import minimize
from typer.testing import CliRunner

from bench.arena_simulation import order_stats, simulate
from happyhorse.arena.integrity import defend, gold_weight
from happyhorse.arena.matchmaking import choose_pair
from happyhorse.arena.ratings import ELO_PER_NAT, BoardSettings, Votes, board, bootstrap, fit_bt, to_rating
from happyhorse.cli import app


def random_votes(seed=0, n=6, m=600):
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1, n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    s = np.where(rng.random(m) < 0.15, 0.5, (rng.random(m) < p).astype(float))
    return Votes([f"m{k}" for k in range(n)], a, b, s, rng.uniform(0.3, 1.0, m))


def independent_fit(votes: Votes) -> np.ndarray:
    """Logistic regression written from scratch and solved by scipy: each tie becomes half a win and half a
    loss (two rows of half weight), the first model's strength is fixed at 0."""
    rows_a = np.concatenate([votes.a, votes.a])
    rows_b = np.concatenate([votes.b, votes.b])
    y = np.concatenate([np.where(votes.s == 0.5, 1.0, votes.s), np.where(votes.s == 0.5, 0.0, votes.s)])
    w = np.concatenate([np.where(votes.s == 0.5, 0.5, 1.0) * votes.w, np.where(votes.s == 0.5, 0.5, 0.0) * votes.w])
    n = len(votes.names)

    def loss(free):
        theta = np.concatenate([[0.0], free])
        x = theta[rows_a] - theta[rows_b]
        return np.sum(w * (np.logaddexp(0, x) - y * x))

    result = minimize(loss, np.zeros(n - 1), method="BFGS", options={"gtol": 1e-10})
    return np.concatenate([[0.0], result.x])


def test_fit_agrees_with_independent_logistic_regression_to_1e3_points():
    votes = random_votes()
    ours = to_rating(fit_bt(votes), anchor_index=0)
    reference = to_rating(independent_fit(votes), anchor_index=0)
    assert np.max(np.abs(ours - reference)) < 1e-3


def test_fit_agrees_with_statsmodels_glm_to_1e3_points():
    sm = pytest.importorskip("statsmodels.api")  # optional: pip install statsmodels
    votes = random_votes()
    ours = to_rating(fit_bt(votes), anchor_index=0)
    x = np.zeros((len(votes.a), len(votes.names)))
    x[np.arange(len(votes.a)), votes.a] = 1
    x[np.arange(len(votes.a)), votes.b] = -1
    glm = sm.GLM(votes.s, x[:, 1:], family=sm.families.Binomial(), var_weights=votes.w).fit(tol=1e-14)
    assert np.max(np.abs(ours - to_rating(np.concatenate([[0.0], glm.params]), anchor_index=0))) < 1e-3


def test_a_tie_counts_as_half_a_win():
    # A beat B once and tied once: A's mean score 0.75, so P(A beats B) = 3/4, log-odds ln 3.
    votes = Votes(["A", "B"], [0, 0], [1, 1], [1.0, 0.5])
    theta = fit_bt(votes, l2=0.0)
    assert theta[0] - theta[1] == pytest.approx(np.log(3), abs=1e-9)
    assert (theta[0] - theta[1]) * ELO_PER_NAT == pytest.approx(400 * np.log10(3), abs=1e-6)


def test_an_undefeated_model_stays_preliminary():
    """All wins: the MLE diverges and every bootstrap resample agrees, so the narrow interval is no evidence."""
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    keep = a != b
    a, b, s = list(a[keep]), list(b[keep]), list(rng.integers(0, 2, keep.sum()).astype(float))
    a, b, s = a + [3] * 25, b + [k % 3 for k in range(25)], s + [1.0] * 25  # model 3 wins all 25
    rows = {r["name"]: r for r in board(Votes(["m0", "m1", "m2", "m3"], a, b, s), BoardSettings(min_votes=20))}
    assert rows["m3"]["listed"] and rows["m3"]["hi"] - rows["m3"]["lo"] < 100  # the interval alone would pass
    assert rows["m3"]["preliminary"]
    assert not any(rows[m]["preliminary"] for m in ("m0", "m1", "m2"))


def test_board_intervals_ranks_anchor_and_listing():
    votes = random_votes(1)
    rows = board(votes, BoardSettings(min_votes=150, rounds=100, anchor="m3", preliminary_width=60))
    by_name = {r["name"]: r for r in rows}
    assert by_name["m3"]["rating"] == 1000.0 and by_name["m3"]["anchor"]
    for r in rows:
        assert r["lo"] <= r["rating"] <= r["hi"]
        assert 1 <= r["rank_lo"] <= r["rank_hi"] <= len(rows)
        assert r["listed"] == (r["votes"] >= 150)
        assert r["preliminary"] == (r["hi"] - r["lo"] > 60)
    listed = [r["rating"] for r in rows if r["listed"]]
    assert listed == sorted(listed, reverse=True)
    with pytest.raises(ValueError, match="rounds"):
        bootstrap(votes, rounds=50)


def test_unlisted_newcomer_moves_neither_the_scale_nor_the_ranks():
    """Three listed models, then a newcomer with 6 votes, all wins: the listed models' mean stays at the
    base and their ranks stay 1..3, though the newcomer rates above all of them."""
    votes = random_votes(2, n=3, m=600)
    a, b = list(votes.a) + [3] * 6, list(votes.b) + [0, 1, 2] * 2
    newcomer = Votes(["m0", "m1", "m2", "m3"], np.array(a), np.array(b), np.concatenate([votes.s, np.ones(6)]))
    rows = {r["name"]: r for r in board(newcomer, BoardSettings(min_votes=20, rounds=100))}
    listed = [rows[m] for m in ("m0", "m1", "m2")]
    assert not rows["m3"]["listed"] and rows["m3"]["rating"] > max(r["rating"] for r in listed)
    assert abs(np.mean([r["rating"] for r in listed]) - 1000.0) < 1e-6
    assert all(r["rank"] <= 3 and r["rank_hi"] <= 3 for r in listed)


def test_true_order_recovered_and_top3_survive_10_percent_adversaries():
    names, a, b, s, who, gold, _ = simulate(0, 8, 200, 30, 0.0, "flip", 50.0)
    exact, tau, top3 = order_stats(fit_bt(Votes(names, a, b, s)))
    assert exact and tau == pytest.approx(1.0)
    for kind in ("flip", "promote"):
        names, a, b, s, who, gold, bad = simulate(1, 8, 200, 30, 0.10, kind, 50.0)
        counted, report = defend(names, a, b, s, who, gold)
        assert order_stats(fit_bt(counted))[2], kind
        assert sum(report[v]["flagged"] for v in bad) >= len(bad) // 2
        assert sum(r["flagged"] for v, r in report.items() if v not in bad) <= 1


def test_gold_reliability_weights_and_flags():
    assert gold_weight(0, 0) == (1.0, False)
    weight, flagged = gold_weight(0, 4)
    assert weight == 0.0 and flagged
    assert 0 < gold_weight(2, 3)[0] <= 1 and not gold_weight(2, 3)[1]


def test_matchmaking_prefers_uncertain_pairs_and_feeds_starved_models():
    rng = np.random.default_rng(0)
    pairs = [(0, 1), (0, 2), (1, 2)]
    i, j = np.array([0]), np.array([1])
    total, theta = np.array([500.0]), np.zeros(3)
    picks = [choose_pair(3, pairs, i, j, total, theta, np.zeros(3), 0.0, rng) for _ in range(200)]
    assert sum(2 in p for p in picks) > 180  # model 2 has no votes: its pairs narrow the intervals most
    recent = np.array([50.0, 50.0, 0.0])
    picks = [choose_pair(3, [(0, 1), (0, 2)], i, j, total, theta, recent, 0.2, rng) for _ in range(20)]
    assert all(2 in p for p in picks)


def write_votes_csv(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model_a", "model_b", "winner", "voter", "category"])
        writer.writerows(rows)


def test_import_votes_and_leaderboard_commands(tmp_path):
    rng = np.random.default_rng(0)
    strengths = {"stallion": 1.0, "mare": 0.0, "pony": -1.0}
    names = list(strengths)
    rows = []
    for k in range(300):
        x, y = rng.choice(3, 2, replace=False)
        p = 1 / (1 + np.exp(-(strengths[names[x]] - strengths[names[y]])))
        winner = "tie" if rng.random() < 0.1 else ("model_a" if rng.random() < p else "model_b")
        rows.append([names[x], names[y], winner, f"u{k % 30}", "t2v-sound"])
    path = tmp_path / "votes.csv"
    write_votes_csv(path, rows)
    db = f"sqlite:///{tmp_path}/arena.db"
    runner = CliRunner(env={"COLUMNS": "300"})
    result = runner.invoke(app, ["arena", "import-votes", str(path), "--db", db])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["arena", "import-votes", str(path), "--db", db])
    assert "imported 0 of 300" in again.output.replace("\n", " ")
    result = runner.invoke(app, ["arena", "leaderboard", "--db", db, "--category", "t2v-sound", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["codename"] for r in data["rows"]] == ["stallion", "mare", "pony"]
    assert data["votes"]["total"] == 300 and "half a win" in data["ties"]
    for row in data["rows"]:
        assert row["lo"] < row["rating"] < row["hi"] and row["listed"]
        assert {"rank", "rank_lo", "rank_hi", "votes", "preliminary"} <= set(row)
    text = runner.invoke(app, ["arena", "leaderboard", "--db", db])
    assert "stallion" in text.stdout and "t2v-sound" in text.stdout
    bad = tmp_path / "bad.csv"
    write_votes_csv(bad, [["stallion", "mare", "model_a", "u1", "t2v-sound"], ["stallion", "pony", "maybe", "u1", "x"]])
    result = runner.invoke(app, ["arena", "import-votes", str(bad), "--db", db])
    assert result.exit_code != 0
    message = " ".join(result.output.replace("│", " ").split())
    assert "line 3" in message and "winner 'maybe'" in message and "category 'x'" in message
    after = json.loads(
        runner.invoke(app, ["arena", "leaderboard", "--db", db, "--category", "t2v-sound", "--json"]).stdout
    )
    assert after["votes"]["total"] == 300  # all or nothing: the good first row was not added either
    # row ids are scoped by their source: a second export numbered from 1 is not a duplicate of the first
    from happyhorse.arena.service import Arena

    arena = Arena(db)
    numbered = [["id", "model_a", "model_b", "winner", "voter", "category"]]
    numbered += [[str(k), "stallion", "pony", "model_a", f"w{k}", "t2v-silent"] for k in range(1, 4)]
    for name in ("judges_a.csv", "judges_b.csv"):
        with (tmp_path / name).open("w", newline="") as f:
            csv.writer(f).writerows(numbered)
    assert arena.import_votes(tmp_path / "judges_a.csv")["imported"] == 3
    assert arena.import_votes(tmp_path / "judges_b.csv")["imported"] == 3
    assert arena.import_votes(tmp_path / "judges_b.csv")["duplicates"] == 3
    assert arena.import_votes(tmp_path / "judges_b.csv", source="judges_a.csv")["duplicates"] == 3
