"""Causal language modelling: predict every next token.

Transformers read windows at random offsets. Recurrent models read contiguous streams
(train/batches.py `StreamBatches`) and carry their hidden state from one window to the
next — truncated back-propagation through time: the state is detached between windows,
zeroed where a document starts, and saved in checkpoints so a resumed run continues
from the very same state. Validation windows always start from a zero state.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.train.batches import StreamBatches
from lmforge.train.objectives.base import Objective


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labels that are not -100."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


class CausalLM(Objective):
    name = "causal_lm"

    def __init__(self, recurrent: bool = False, bos_id: int | None = None):
        self.recurrent = recurrent
        self.bos_id = bos_id
        self.carried: dict[int, torch.Tensor] = {}   # stream -> the state at the end of its last window

    def train_batches(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                      grad_accum: int = 1, rank: int = 0, world: int = 1, mix=None):
        if self.recurrent:
            if mix is not None and mix.alpha != 1.0:
                raise ValueError("data.language_alpha below 1 needs window batches; a recurrent model reads "
                                 "its streams in order (set data.language_alpha = 1)")
            return StreamBatches(tokens, seq_len, batch_size, self.bos_id, grad_accum, rank, world)
        return super().train_batches(tokens, seq_len, batch_size, seed, grad_accum, rank, world, mix)

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        if not self.recurrent or "stream" not in batch:
            return token_losses(model(batch["input_ids"]), batch["labels"]), {}
        key = batch["stream"]
        state = None if batch["restart"] else self.carried.get(key)
        logits, state = model(batch["input_ids"], state=state, resets=batch["resets"], return_state=True)
        self.carried[key] = state.detach()
        return token_losses(logits, batch["labels"]), {}

    def state_dict(self) -> dict:
        return {"carried": {str(k): v.float().cpu() for k, v in self.carried.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.carried = {int(k): v for k, v in state.get("carried", {}).items()}
