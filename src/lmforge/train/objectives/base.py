"""What an objective is to the training loop.

An objective makes its batches (dicts of tensors) from the token shards and computes
`loss(model, batch) -> (loss, metrics)`; it may carry state between batches (a
recurrent model's hidden state), which the checkpoint keeps. The loop calls only
these methods, so a new objective (SFT, classification, DPO) is one new file.

Labels of -100 are ignored by every loss (the convention HF and PyTorch share).
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.train.batches import TokenBatches, fixed_windows


class Objective:
    name = ""
    distributed = True     # trains under torchrun (DDP / FSDP)

    def train_batches(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                      grad_accum: int = 1, rank: int = 0, world: int = 1, mix=None):
        """An object with get(step, micro) -> batch dict, `global_batch` and `seq_len`.
        mix: a LanguageMix that picks each window's language (multilingual token shards)."""
        return TokenBatches(tokens, seq_len, batch_size, seed, grad_accum, rank, world, mix)

    def val_batches(self, tokens: np.ndarray, seq_len: int, n_windows: int, batch_size: int,
                    seed: int) -> list[dict]:
        """The fixed validation sample, the same at every validation."""
        return fixed_windows(tokens, seq_len, n_windows, batch_size, seed=seed)

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def summary(self) -> dict:
        """Counts for the manifest's train stage (e.g. truncated examples)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class ExampleObjective(Objective):
    """An objective over a list of fine-tuning examples, each (token ids, ...), rather than a token
    stream; an example longer than `seq_len` is cut (each subclass states how) and counted."""

    def __init__(self, train: list, val: list, pad_id: int, seq_len: int):
        self.train, self.val, self.pad_id = train, val, pad_id
        self.truncated = sum(len(example[0]) > seq_len for example in train + val)

    def summary(self) -> dict:
        return {"truncated_examples": self.truncated}
