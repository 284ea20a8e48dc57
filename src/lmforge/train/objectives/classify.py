"""Sequence classification: cross-entropy of the classifier head (models/classifier.py) on
labelled texts.

Each example is (token ids, label index). A batch is right-padded to its longest example
(at most `seq_len`; a longer text keeps its first `seq_len` tokens, and `truncated` counts
them) with an attention mask, so the head reads each text's own last token or mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lmforge.models.classifier import classify_logits
from lmforge.train.batches import ItemBatches
from lmforge.train.objectives.base import ExampleObjective

Example = tuple[list[int], int]


def label_batch(examples: list[Example], indices: list[int], seq_len: int, pad_id: int) -> dict:
    chosen = [examples[i] for i in indices]
    width = min(seq_len, max(len(ids) for ids, _ in chosen))
    ids = torch.full((len(chosen), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(chosen), width), dtype=torch.long)
    for row, (tokens, _) in enumerate(chosen):
        tokens = tokens[:width]
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask, "label": torch.tensor([lab for _, lab in chosen])}


@torch.no_grad()
def predict(model, examples: list[Example], seq_len: int, pad_id: int, batch_size: int = 32) -> torch.Tensor:
    """(N, n_labels) class probabilities of `examples`, in order."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(examples), batch_size):
        b = label_batch(examples, list(range(i, min(i + batch_size, len(examples)))), seq_len, pad_id)
        out.append(torch.softmax(classify_logits(model, b["input_ids"], b["attention_mask"]).float(), -1))
    model.train(was_training)
    return torch.cat(out)


class Classify(ExampleObjective):
    name = "classify"
    distributed = False    # the head reads the family's features outside the wrapped forward

    def train_batches(self, tokens, seq_len: int, batch_size: int, seed: int, grad_accum: int = 1,
                      rank: int = 0, world: int = 1):
        return ItemBatches(len(self.train), lambda chosen: label_batch(self.train, chosen, seq_len, self.pad_id),
                           seq_len, batch_size, seed, grad_accum, rank, world)

    def val_batches(self, tokens, seq_len: int, n_windows: int, batch_size: int, seed: int) -> list[dict]:
        """The first `n_windows` validation examples in a seeded order (the dev sample used for selection)."""
        order = torch.randperm(len(self.val), generator=torch.Generator().manual_seed(seed)).tolist()
        order = order[:n_windows] if n_windows else order
        return [label_batch(self.val, order[i:i + batch_size], seq_len, self.pad_id)
                for i in range(0, len(order), batch_size)]

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        logits = classify_logits(model, batch["input_ids"], batch["attention_mask"]).float()
        labels = batch["label"]
        return F.cross_entropy(logits, labels), {"accuracy": (logits.argmax(-1) == labels).float().mean()}
