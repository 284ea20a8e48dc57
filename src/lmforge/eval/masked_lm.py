"""Evaluation of masked-language models (encoders), where perplexity is not defined.

  mlm_loss, mlm_accuracy     on a fixed, masked validation sample (BERT's 80/10/10 corruption)
  unigram_mlm_accuracy       a baseline on the very same masked positions: always answer the most
                             frequent ordinary token of the training split. A model that does
                             not beat it has learned nothing from the context.
  pll_per_token              pseudo-log-likelihood (Salazar et al., 2020; the CrowS-Pairs paper's
                             score for encoders): each of `pll_tokens` validation tokens masked on
                             its own and scored given all the others; mean negative log-likelihood
                             in nats, and its exponential, the pseudo-perplexity.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.train.batches import fixed_windows


@torch.no_grad()
def evaluate_masked(model, objective, train_tokens: np.ndarray, val_tokens: np.ndarray, *, seq_len: int,
                    windows: int, pll_tokens: int, batch_size: int = 16, seed: int = 0) -> dict:
    model.eval()
    special = objective.special
    counts = np.bincount(np.asarray(train_tokens), minlength=len(special))[:len(special)]
    counts[special.numpy()] = 0
    unigram_top = int(counts.argmax())

    loss_sum, n, correct, baseline = 0.0, 0, 0, 0
    for batch in objective.val_batches(val_tokens, seq_len, windows, batch_size, seed):
        logits = model(batch["input_ids"]).float()
        labels = batch["labels"]
        selected = labels != -100
        loss_sum += float(F.cross_entropy(logits[selected], labels[selected], reduction="sum"))
        correct += int((logits.argmax(-1)[selected] == labels[selected]).sum())
        baseline += int((labels[selected] == unigram_top).sum())
        n += int(selected.sum())

    nll, scored = pseudo_log_likelihood(model, objective, val_tokens, seq_len, pll_tokens, batch_size, seed)
    return {"mlm_loss": round(loss_sum / n, 5), "mlm_accuracy": round(correct / n, 4),
            "unigram_mlm_accuracy": round(baseline / n, 4), "masked_tokens": n,
            "unigram_token": unigram_top,
            "pll_per_token": round(nll / max(scored, 1), 5),
            "pseudo_perplexity": round(math.exp(nll / max(scored, 1)), 3), "pll_tokens": scored}


@torch.no_grad()
def pseudo_log_likelihood(model, objective, tokens: np.ndarray, seq_len: int, n_tokens: int,
                          batch_size: int, seed: int) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens scored): each chosen token masked alone."""
    total, scored = 0.0, 0
    per_window = min(seq_len, 32)
    for batch in fixed_windows(tokens, seq_len, max(1, -(-n_tokens // per_window)), 1, seed=seed + 1):
        ids = batch["input_ids"][0]
        ordinary = torch.nonzero(~objective.special[ids]).flatten()
        positions = ordinary[torch.linspace(0, len(ordinary) - 1, min(per_window, len(ordinary))).long()] \
            if len(ordinary) else ordinary
        for i in range(0, len(positions), batch_size):
            pos = positions[i:i + batch_size]
            rows = ids.repeat(len(pos), 1)
            rows[torch.arange(len(pos)), pos] = objective.mask_id
            logp = torch.log_softmax(model(rows).float()[torch.arange(len(pos)), pos], dim=-1)
            total -= float(logp[torch.arange(len(pos)), ids[pos]].sum())
            scored += len(pos)
        if scored >= n_tokens:
            break
    return total, scored
