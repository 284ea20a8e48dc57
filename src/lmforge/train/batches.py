"""Deterministic batches from a flat token stream, as dicts the objectives read.

The batch at step s is a pure function of (seed, s): this makes the data position of
a checkpoint just its step number, which is what makes resume exact, and lets every
rank of a distributed run compute the same global batch and take its own slice of it.

  TokenBatches   windows at random offsets (transformers): {"input_ids", "labels"}; with a
                 language mix (data/language_mix.py), each window's language drawn first
  StreamBatches  contiguous streams read window after window (recurrent models, whose
                 state runs on from one window to the next): adds "resets", "stream"
                 and "restart"
  ItemBatches    items of a fixed list (fine-tuning examples, packed windows), each seen once
                 per pass in a permutation seeded by (seed, pass); the objective makes the batch
"""

from __future__ import annotations

import numpy as np
import torch


def _rows(global_rows: list, rank: int, grad_accum: int, micro: int, batch_size: int) -> list:
    # Rank-major slicing: 1 rank x 2 micro-batches sees the same rows as 2 ranks x 1.
    k = rank * grad_accum + micro
    return global_rows[k * batch_size:(k + 1) * batch_size]


class ItemBatches:
    def __init__(self, n_items: int, make, seq_len: int, batch_size: int, seed: int, grad_accum: int = 1,
                 rank: int = 0, world: int = 1):
        """make(list of item indices) -> batch dict."""
        if n_items < 1:
            raise ValueError("no training examples")
        self.n_items, self.make, self.seq_len, self.batch_size = n_items, make, seq_len, batch_size
        self.seed, self.grad_accum, self.rank, self.world = seed, grad_accum, rank, world

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def get(self, step: int, micro: int) -> dict:
        per_pass = max(1, self.n_items // self.global_batch)
        order = torch.randperm(self.n_items, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + step // per_pass))
        first = (step % per_pass) * self.global_batch + (self.rank * self.grad_accum + micro) * self.batch_size
        return self.make([int(order[(first + j) % self.n_items]) for j in range(self.batch_size)])


class TokenBatches:
    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                 grad_accum: int = 1, rank: int = 0, world: int = 1, mix=None):
        if len(tokens) < seq_len + 2:
            raise ValueError(f"{len(tokens)} tokens are too few for windows of {seq_len}")
        self.tokens = tokens
        self.mix = mix
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank, self.world = rank, world
        self.seed = seed

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def get(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        """Inputs and next-token labels for one micro-batch of this rank at `step`."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        starts = self.mix.starts(self.global_batch, gen) if self.mix is not None else \
            torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.global_batch,), generator=gen).tolist()
        return windows(self.tokens, _rows(starts, self.rank, self.grad_accum, micro, self.batch_size),
                       self.seq_len)


class StreamBatches:
    """The training split cut into `global_batch` contiguous streams, each read in order.

    Row j of the global batch is stream j; step s reads window s mod W of every stream
    (W windows fit in one), so a recurrent model's state at the end of step s is its
    state at the start of step s + 1. Each pass over the data starts afresh ("restart");
    within a pass the state is zeroed where a document begins (`resets`: its BOS token)."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, bos_id: int | None,
                 grad_accum: int = 1, rank: int = 0, world: int = 1):
        self.tokens = tokens
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.rank, self.world = rank, world
        self.bos_id = bos_id
        self.stream_len = (len(tokens) - 1) // self.global_batch
        self.windows_per_pass = self.stream_len // seq_len
        if self.windows_per_pass < 1:
            raise ValueError(f"{len(tokens)} tokens cannot fill {self.global_batch} streams of at least one "
                             f"window of {seq_len}; lower the batch size or the window")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accum * self.world

    def get(self, step: int, micro: int) -> dict:
        w = step % self.windows_per_pass
        streams = _rows(list(range(self.global_batch)), self.rank, self.grad_accum, micro, self.batch_size)
        batch = windows(self.tokens, [j * self.stream_len + w * self.seq_len for j in streams], self.seq_len)
        resets = (batch["input_ids"] == self.bos_id) if self.bos_id is not None else \
            torch.zeros_like(batch["input_ids"], dtype=torch.bool)
        return {**batch, "resets": resets, "stream": self.rank * self.grad_accum + micro, "restart": w == 0}


def windows(tokens: np.ndarray, starts: list[int], seq_len: int) -> dict[str, torch.Tensor]:
    """Inputs and next-token labels for windows of seq_len + 1 tokens beginning at `starts`."""
    buf = np.stack([np.asarray(tokens[s:s + seq_len + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(buf)
    return {"input_ids": t[:, :-1], "labels": t[:, 1:]}


def fixed_windows(tokens: np.ndarray, seq_len: int, n_windows: int, batch_size: int, seed: int = 0) -> list[dict]:
    """A fixed validation sample: the same `n_windows` windows every time, in batches."""
    gen = torch.Generator().manual_seed(seed + 7919)
    hi = max(len(tokens) - seq_len - 1, 1)
    starts = torch.randint(0, hi, (n_windows,), generator=gen).tolist()
    return [windows(tokens, starts[i:i + batch_size], seq_len) for i in range(0, n_windows, batch_size)]
