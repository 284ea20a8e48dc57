"""Uncertainty of evaluation scores: standard errors and bootstrap confidence intervals.

Both are computed over evaluation examples, the unit that was sampled; a score
without its uncertainty invites reading noise between two checkpoints as progress.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean with the sample (n-1) variance, as lm-evaluation-harness reports it."""
    n = len(values)
    if n < 2:
        return float("nan")
    return float(np.std(np.asarray(values, dtype=np.float64), ddof=1) / math.sqrt(n))


def bootstrap_ci(n: int, statistic: Callable[[np.ndarray], float], *, resamples: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over resamples of n examples drawn with replacement.

    `statistic` gets an index array so corpus-level metrics (BLEU, a fitted ranking)
    can be recomputed on each resample, not only means of per-example scores."""
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, n, size=n)) for _ in range(resamples)])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_mean_ci(values: Sequence[float], **kwargs) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return bootstrap_ci(len(arr), lambda idx: float(arr[idx].mean()), **kwargs)
