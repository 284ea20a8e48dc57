"""Membership inference: can an attacker tell the training documents from held-out ones?

Three attacks as MIMIR implements them, each a score where higher means "was trained on":
- loss: minus the mean negative log-likelihood per token (Yeom et al., 2018);
- zlib: minus that loss divided by the zlib-compressed size of the text in bytes (Carlini
  et al., 2021: a text that is merely easy, compressible, is not taken for a member);
- min-k%: the mean of the lowest k of the token log-probabilities (Shi et al., 2024).
The attacks see passages of `max_tokens` tokens cut from the documents (so a small held-out
split still gives enough samples), as many from training documents as from held-out ones.
Each is summed up by its ROC AUC, with a bootstrap 95% interval: 0.5 is an attacker who
cannot tell, 1.0 one who always can.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.stats import rankdata

from lmforge.eval.stats import bootstrap_ci


def passages(lm, texts: list[str], size: int, n: int, rng: np.random.Generator) -> list[list[int]]:
    """Up to `n` passages of `size` tokens (whole ones only, so all are alike), drawn at random."""
    cut = [tokens[i:i + size] for text in texts for tokens in [lm.encode(text)]
           for i in range(0, len(tokens) - size + 1, size)]
    return [cut[i] for i in sorted(rng.choice(len(cut), size=min(n, len(cut)), replace=False))]


def attack_scores(lm, chunks: list[list[int]], min_k: float) -> dict[str, np.ndarray]:
    prefix = [lm.prefix_token_id] if lm.prefix_token_id is not None else None
    requests = [(prefix, c) if prefix else (c[:1], c[1:]) for c in chunks]
    scored_texts = [lm.decode(c) for c in chunks]
    logprobs = lm.token_logprobs(requests)
    loss = np.array([-np.mean(lp) for lp in logprobs])
    size = np.array([len(zlib.compress(t.encode("utf-8"))) for t in scored_texts], dtype=float)
    lowest = [np.sort(lp)[:max(1, int(len(lp) * min_k))] for lp in logprobs]
    return {"loss": -loss, "zlib": -loss / np.maximum(size, 1.0), "min_k": np.array([x.mean() for x in lowest])}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank sum (ties count half), as scikit-learn's roc_auc_score
    gives it, about a hundred times faster: the bootstrap calls it thousands of times."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auc_with_interval(members: np.ndarray, others: np.ndarray, resamples: int, seed: int) -> dict:
    labels = np.r_[np.ones(len(members)), np.zeros(len(others))]
    scores = np.r_[members, others]

    def statistic(idx: np.ndarray) -> float:
        return roc_auc(labels[idx], scores[idx])

    lo, hi = bootstrap_ci(len(labels), statistic, resamples=resamples, seed=seed)
    return {"auc": round(roc_auc(labels, scores), 4), "ci95": [round(lo, 4), round(hi, 4)]}


def membership(lm, members: list[str], others: list[str], max_tokens: int, n: int, min_k: float,
               resamples: int = 1000, seed: int = 0) -> dict:
    """members / others: training and held-out documents; `n` passages of each are attacked."""
    rng = np.random.default_rng([seed, 0x3E3B])
    theirs = passages(lm, others, max_tokens, n, rng)
    mine = passages(lm, members, max_tokens, len(theirs), rng)
    theirs = theirs[:len(mine)]
    if len(mine) < 2:
        return {"skipped": f"fewer than 2 passages of {max_tokens} tokens on one side"}
    a, b = attack_scores(lm, mine, min_k), attack_scores(lm, theirs, min_k)
    attacks = {name: auc_with_interval(a[name], b[name], resamples, seed) for name in a}
    return {"members": len(mine), "non_members": len(theirs), "tokens_per_passage": max_tokens,
            "attacks": attacks, "max_auc": max(x["auc"] for x in attacks.values())}
