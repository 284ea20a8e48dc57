"""Supervised fine-tuning on conversations: loss on the assistant's tokens only, several
conversations packed per window without attention across them.

Each example is (token ids, loss mask) as data/conversations.render makes them: the mask is built
while rendering, so nothing is searched for here. Examples are packed in order, first come first
served, into windows of `seq_len` tokens; a window's rest is padding. Inside a window every token
attends only to earlier tokens of its own conversation (a block-diagonal causal mask) and its
position restarts at 0 with each conversation, so a packed conversation computes exactly what it
would alone. An example longer than the window keeps its last `seq_len` tokens: the answer is at
the end, so the beginning of a long prompt is what goes (the rule is stated, and `truncated`
counts them). A batch with no trained token (it cannot happen with that rule unless an answer
alone outgrows the window) gives a zero loss rather than NaN.

Batches: step s takes windows from a permutation of all windows seeded by (seed, pass), so resume
is exact and every window is seen once per pass over the data.
"""

from __future__ import annotations

import torch

from lmforge.train.batches import ItemBatches
from lmforge.train.objectives.base import ExampleObjective
from lmforge.train.objectives.causal_lm import token_losses


def pack(lengths: list[int], seq_len: int) -> list[list[int]]:
    """Example indices per window, in order: a window takes examples while they fit."""
    windows, current, used = [], [], 0
    for i, n in enumerate(lengths):
        n = min(n, seq_len)
        if current and used + n > seq_len:
            windows.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        windows.append(current)
    return windows


def window_batch(examples: list[tuple[list[int], list[bool]]], windows: list[list[int]], seq_len: int,
                 pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids, labels (-100 where not trained), position_ids and `attend` (B, 1, T, T): which
    tokens each token may attend to."""
    B = len(windows)
    ids = torch.full((B, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((B, seq_len), -100, dtype=torch.long)
    positions = torch.zeros((B, seq_len), dtype=torch.long)
    segment = torch.zeros((B, seq_len), dtype=torch.long)       # 0 = padding
    for b, members in enumerate(windows):
        start = 0
        for s, i in enumerate(members, 1):
            tokens, mask = examples[i][0][-seq_len:], examples[i][1][-seq_len:]
            n = len(tokens)
            ids[b, start:start + n] = torch.tensor(tokens)
            # position t predicts token t + 1: a label where that next token is trained
            nxt = torch.tensor(tokens[1:])
            trained = torch.tensor(mask[1:], dtype=torch.bool)
            labels[b, start:start + n - 1] = torch.where(trained, nxt, torch.full_like(nxt, -100))
            positions[b, start:start + n] = torch.arange(n)
            segment[b, start:start + n] = s
            start += n
    same = segment[:, :, None] == segment[:, None, :]
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    attend = same & causal & (segment[:, :, None] > 0)
    attend |= torch.eye(seq_len, dtype=torch.bool)          # padding rows see themselves: no empty row
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attend": attend[:, None]}


@torch.no_grad()
def assistant_nll(model, examples: list[tuple[list[int], list[bool]]], pad_id: int, seq_len: int,
                  batch_size: int = 8) -> float:
    """Mean negative log-likelihood (nats) of the assistant tokens of `examples`, packed as in training."""
    was_training = model.training
    model.eval()
    windows = pack([len(ids) for ids, _ in examples], seq_len)
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = window_batch(examples, windows[i:i + batch_size], seq_len, pad_id)
        logits = model(batch["input_ids"], position_ids=batch["position_ids"], mask=batch["attend"]).float()
        labels = batch["labels"]
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                         ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


class SFT(ExampleObjective):
    name = "sft"

    def train_batches(self, tokens, seq_len: int, batch_size: int, seed: int, grad_accum: int = 1,
                      rank: int = 0, world: int = 1):
        windows = pack([len(ids) for ids, _ in self.train], seq_len)
        return ItemBatches(len(windows), lambda chosen: window_batch(self.train, [windows[i] for i in chosen],
                                                                     seq_len, self.pad_id),
                           seq_len, batch_size, seed, grad_accum, rank, world)

    def val_batches(self, tokens, seq_len: int, n_windows: int, batch_size: int, seed: int) -> list[dict]:
        windows = pack([len(ids) for ids, _ in self.val], seq_len)
        return [window_batch(self.val, windows[i:i + batch_size], seq_len, self.pad_id)
                for i in range(0, len(windows), batch_size)]

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = model(batch["input_ids"], position_ids=batch["position_ids"], mask=batch["attend"])
        if not bool((batch["labels"] != -100).any()):
            return logits.sum() * 0.0, {}
        return token_losses(logits, batch["labels"]), {}
