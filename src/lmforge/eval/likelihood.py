"""Log-likelihood scoring of token streams with rolling windows.

Every token after the first is scored exactly once: the stream is cut into
disjoint windows of `window` predicted tokens, and each window is fed together
with the token before it, so no token is scored twice and none is skipped (the
lm-evaluation-harness definition of rolling log-likelihood with no extra context).
This is the fast in-training estimate over a token stream; `lmforge.eval.lm` scores
texts with lm-eval's exact windows, where the last window also gets full context.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def score_token_stream(model, tokens: np.ndarray, window: int, batch_size: int = 8,
                       device: str | torch.device = "cpu") -> tuple[float, int]:
    """Return (sum of negative log-likelihood in nats, number of tokens scored)."""
    tokens = np.asarray(tokens)
    n = len(tokens)
    if n < 2:
        return 0.0, 0
    starts = list(range(0, n - 1, window))
    total, count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        seqs = [torch.from_numpy(tokens[s:min(s + window + 1, n)].astype(np.int64)) for s in chunk]
        width = max(len(s) for s in seqs)
        x = torch.zeros(len(seqs), width - 1, dtype=torch.long)
        y = torch.full((len(seqs), width - 1), -100, dtype=torch.long)
        for j, s in enumerate(seqs):
            x[j, :len(s) - 1] = s[:-1]
            y[j, :len(s) - 1] = s[1:]
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                              ignore_index=-100, reduction="sum")
        total += float(nll)
        count += int((y != -100).sum())
    return total, count
