"""Deterministic batches from a flat token stream.

The batch at step s is a pure function of (seed, s): windows start at offsets drawn
from a generator seeded with both. This makes the data position of a checkpoint
just its step number, which is what makes resume exact, and lets every rank of a
distributed run compute the same global batch and take its own slice of it.
"""

from __future__ import annotations

import numpy as np
import torch


class TokenBatches:
    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                 grad_accum: int = 1, rank: int = 0, world: int = 1):
        if len(tokens) < seq_len + 2:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of {seq_len}")
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank, self.world = rank, world
        self.seed = seed

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def get(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets for one micro-batch of this rank at `step`."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.global_batch,), generator=gen)
        # Rank-major slicing: 1 rank x 2 micro-batches sees the same rows as 2 ranks x 1.
        k = self.rank * self.grad_accum + micro
        rows = starts[k * self.batch_size:(k + 1) * self.batch_size].tolist()
        return windows(self.tokens, rows, self.seq_len)


def windows(tokens: np.ndarray, starts: list[int], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for windows of seq_len + 1 tokens beginning at `starts`."""
    buf = np.stack([np.asarray(tokens[s:s + seq_len + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(buf)
    return t[:, :-1], t[:, 1:]


def fixed_windows(tokens: np.ndarray, seq_len: int, n_windows: int, batch_size: int, seed: int = 0):
    """A fixed validation sample: the same `n_windows` windows every time, in batches."""
    gen = torch.Generator().manual_seed(seed + 7919)
    hi = max(len(tokens) - seq_len - 1, 1)
    starts = torch.randint(0, hi, (n_windows,), generator=gen).tolist()
    return [windows(tokens, starts[i:i + batch_size], seq_len) for i in range(0, n_windows, batch_size)]
