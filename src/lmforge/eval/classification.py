"""Classification metrics shared by zero-shot classification tasks and classification fine-tunes."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def accuracy(gold: Sequence[Hashable], pred: Sequence[Hashable]) -> float:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        return float("nan")
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def confusion_matrix(gold: Sequence[Hashable], pred: Sequence[Hashable],
                     labels: Sequence[Hashable] | None = None) -> tuple[list, np.ndarray]:
    """Return (labels, counts) with counts[i, j] = examples of gold labels[i] predicted as labels[j]."""
    if labels is None:
        labels = sorted(set(gold) | set(pred), key=str)
    index = {lab: i for i, lab in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for g, p in zip(gold, pred):
        counts[index[g], index[p]] += 1
    return list(labels), counts


def macro_f1(gold: Sequence[Hashable], pred: Sequence[Hashable],
             labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1; a class never gold nor predicted is left out."""
    labels, counts = confusion_matrix(gold, pred, labels)
    f1s = []
    for i in range(len(labels)):
        tp = counts[i, i]
        fp = counts[:, i].sum() - tp
        fn = counts[i, :].sum() - tp
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")
