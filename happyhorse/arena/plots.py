"""Win-rate and battle-count matrices as PNG (matplotlib), and the public dump of boards and votes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from ..media import atomic_path, write_json_atomic


def matrix_png(names: list[str], values: np.ndarray, title: str, fmt: str, cmap: str) -> bytes:
    """One annotated heat map, rows and columns in the order given (best first on a board)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * max(n, 2), 1.0 + 0.6 * max(n, 2)), dpi=100)
    shown = np.ma.masked_invalid(values.astype(float))
    image = ax.imshow(shown, cmap=cmap, vmin=0 if fmt == ".0f" else 0.0, vmax=None if fmt == ".0f" else 1.0)
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("model B")
    ax.set_ylabel("model A")
    ax.set_title(title, fontsize=9)
    for r in range(n):
        for c in range(n):
            if np.isfinite(values[r, c]) and r != c:
                ax.text(c, r, format(values[r, c], fmt), ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def board_matrices(arena, category: str, judge: str = "human", result: dict | None = None) -> tuple[bytes, bytes]:
    """(win-rate PNG, battle-count PNG) of one board, models ordered by rating (from `result`, the board
    already computed, when given: its bootstrap is the costly part)."""
    names, rate, count = arena.matrices(category, judge)
    order = list(range(len(names)))
    if names:
        result = result or arena.leaderboard(category, judge)
        ranked = [row["codename"] for row in result["rows"] + result["unlisted"]]
        order = sorted(order, key=lambda k: ranked.index(names[k]) if names[k] in ranked else len(ranked))
    names = [names[k] for k in order]
    rate, count = rate[np.ix_(order, order)], count[np.ix_(order, order)]
    win = matrix_png(names, rate, f"{category}: share of A's wins over B (ties = 1/2)", ".2f", "RdBu")
    battles = matrix_png(names, count, f"{category}: battles (votes) between A and B", ".0f", "Blues")
    return win, battles


def write_dump(arena, out: str | Path) -> list[Path]:
    """leaderboard.json / .csv (every board with votes), votes.json / .csv (anonymised), and per board
    winrate_CATEGORY.png and battles_CATEGORY.png; every file written atomically."""
    from .ratings import board_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    boards = {c: arena.leaderboard(c) for c in arena.categories_with_votes()}
    written = []
    write_json_atomic(out / "leaderboard.json", json.dumps(boards, indent=1) + "\n")
    write_json_atomic(out / "leaderboard.csv", board_csv(boards))
    votes = arena.votes_dump()
    write_json_atomic(out / "votes.json", json.dumps(votes, indent=1) + "\n")
    buffer = io.StringIO()
    columns = ["n", "category", "model_a", "model_b", "winner", "voter", "judge", "source", "day"]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(votes)
    write_json_atomic(out / "votes.csv", buffer.getvalue())
    written += [out / name for name in ("leaderboard.json", "leaderboard.csv", "votes.json", "votes.csv")]
    for category in boards:
        for name, png in zip(("winrate", "battles"), board_matrices(arena, category), strict=True):
            path = out / f"{name}_{category}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(png)
            written.append(path)
    return written
