"""Rankings from pairwise human votes, and agreement between raters.

Bradley–Terry: P(i beats j) = p_i / (p_i + p_j). Strengths are fitted by the
classic minorization–maximization updates (Hunter, 2004) on win counts where a tie
(or "both bad") counts half a win to each side. A small symmetric prior (a fraction
of a tie between every pair) keeps a model that never won finite. Strengths are
shown on the Elo scale, 400·log10(p) + 1000, so a 100-point gap means the higher
model is preferred about 64% of the time.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np

from lmforge.eval.stats import bootstrap_ci

# (model_a, model_b, outcome) with outcome "a", "b", "tie" or "both_bad"
Vote = tuple[str, str, str]


def _win_matrix(votes: Sequence[Vote], index: dict[str, int], prior: float) -> np.ndarray:
    n = len(index)
    wins = np.full((n, n), prior / 2.0)
    np.fill_diagonal(wins, 0.0)
    for a, b, outcome in votes:
        i, j = index[a], index[b]
        if outcome == "a":
            wins[i, j] += 1.0
        elif outcome == "b":
            wins[j, i] += 1.0
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    return wins


def bradley_terry(votes: Sequence[Vote], models: Sequence[str], prior: float = 0.1,
                  iterations: int = 200) -> dict[str, float]:
    """Elo-scale Bradley–Terry ratings of `models` (mean strength fixed at 1000)."""
    index = {m: i for i, m in enumerate(models)}
    wins = _win_matrix(votes, index, prior)
    games = wins + wins.T
    p = np.ones(len(models))
    for _ in range(iterations):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        p_new = wins.sum(axis=1) / np.maximum(denom, 1e-12)
        p_new /= math.exp(np.log(np.maximum(p_new, 1e-12)).mean())   # geometric mean 1
        if np.allclose(p_new, p, rtol=1e-10, atol=1e-12):
            p = p_new
            break
        p = p_new
    return {m: 1000.0 + 400.0 * math.log10(max(p[i], 1e-12)) for m, i in index.items()}


def leaderboard(votes: Sequence[Vote], models: Sequence[str], *, resamples: int = 200,
                seed: int = 0) -> list[dict]:
    """Models best first, with rating, bootstrap 95% interval (votes resampled) and tallies."""
    ratings = bradley_terry(votes, models)
    rows = []
    for m in models:
        if votes:
            lo, hi = bootstrap_ci(len(votes), lambda idx, m=m: bradley_terry(
                [votes[k] for k in idx], models)[m], resamples=resamples, seed=seed)
        else:
            lo = hi = ratings[m]
        tally = Counter()
        for a, b, outcome in votes:
            if m not in (a, b):
                continue
            side = "a" if m == a else "b"
            tally["wins" if outcome == side else "ties" if outcome in ("tie", "both_bad") else "losses"] += 1
        rows.append({"model": m, "rating": ratings[m], "ci95": [lo, hi], "votes": sum(tally.values()),
                     "wins": tally["wins"], "losses": tally["losses"], "ties": tally["ties"]})
    return sorted(rows, key=lambda r: -r["rating"])


def cohen_kappa(labels_1: Sequence[str], labels_2: Sequence[str]) -> float:
    """Agreement of two raters on the same items beyond chance: (p_o - p_e) / (1 - p_e)."""
    n = len(labels_1)
    if n == 0 or n != len(labels_2):
        return float("nan")
    observed = sum(x == y for x, y in zip(labels_1, labels_2)) / n
    c1, c2 = Counter(labels_1), Counter(labels_2)
    expected = sum(c1[k] * c2[k] for k in c1) / (n * n)
    if expected == 1.0:      # both raters gave every item the same one label: they agree fully
        return 1.0
    return (observed - expected) / (1.0 - expected)


def pairwise_kappa(judgements: dict[str, dict[str, str]]) -> list[dict]:
    """judgements[rater][item] = label -> κ for every pair of raters sharing at least one item."""
    raters = sorted(judgements)
    out = []
    for x in range(len(raters)):
        for y in range(x + 1, len(raters)):
            r1, r2 = raters[x], raters[y]
            shared = sorted(set(judgements[r1]) & set(judgements[r2]))
            if shared:
                kappa = cohen_kappa([judgements[r1][i] for i in shared], [judgements[r2][i] for i in shared])
                out.append({"raters": [r1, r2], "items": len(shared), "kappa": kappa})
    return out
