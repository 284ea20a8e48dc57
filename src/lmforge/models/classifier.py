"""A sequence-classification head on any family: one linear layer on one vector per sequence.

The vector is the family's `features`: the last real token's hidden state for the causal
families (it has read the whole text), the mean over real tokens for `bert` (its MLM
pre-training gives [CLS] no meaning of its own). The head is the model's `score` module
(the name HF gives it in `LlamaForSequenceClassification`), and the label names live in
`model.cfg.labels`, so a classifier saves, loads and resumes like any model of its family;
the language-model head stays, so the base model's other uses survive.

Which parameters train is a recipe choice (`train.train_layers`): -1 all, 0 the head
only, N the head and the last N blocks.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from lmforge.errors import UserError
from lmforge.models.registry import HEAD_PREFIX, family_of

HEAD = HEAD_PREFIX.rstrip(".")


def add_head(model: nn.Module, labels: list[str]) -> nn.Module:
    """Give `model` a freshly initialised head for `labels` (in place); returns the model."""
    head = nn.Linear(model.cfg.d_model, len(labels))
    nn.init.normal_(head.weight, 0.0, model.cfg.init_std)
    nn.init.zeros_(head.bias)
    setattr(model, HEAD, head.to(next(model.parameters()).device))
    model.cfg = replace(model.cfg, labels=list(labels))
    return model


def is_classifier(model: nn.Module) -> bool:
    return bool(getattr(model.cfg, "labels", None))


def classify_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) right-padded ids and their 0/1 mask -> (B, n_labels) logits."""
    features = family_of(model).features(model, input_ids, attention_mask)
    return getattr(model, HEAD)(features)


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state (B, d) at each row's last real position (rows are right-padded)."""
    last = attention_mask.long().sum(1).clamp_min(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def freeze_for(model: nn.Module, train_layers: int) -> int:
    """Leave trainable what `train.train_layers` says; returns the number of trainable parameters."""
    if train_layers < 0:
        model.requires_grad_(True)
        return sum(p.numel() for p in model.parameters())
    blocks = family_of(model).blocks(model)
    if train_layers > len(blocks):
        raise UserError(f"train.train_layers = {train_layers}, but the model has {len(blocks)} "
                        f"block(s); use -1 for all, 0 for the head only")
    model.requires_grad_(False)
    trained = [getattr(model, HEAD)] + (blocks[len(blocks) - train_layers:] if train_layers else [])
    for module in trained:
        module.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
