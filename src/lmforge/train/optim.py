"""Optimizers and learning-rate schedules.

With `optimizer = "muon"`, 2-D hidden matrices (attention and MLP projections)
go to Muon and everything else (embeddings, head, norms, biases) to AdamW, the
split modded-nanogpt found best; with "adamw" everything goes to AdamW, with
weight decay only on matrices. The n-gram embedding (models/ngram.py), if any, goes
to AdamW in both cases, in a group of its own with `ngram_weight_decay`.
"""

from __future__ import annotations

import math

import torch

from lmforge.train.config import TrainConfig
from lmforge.train.muon import Muon


def _is_hidden_matrix(name: str, p: torch.Tensor) -> bool:
    return p.dim() == 2 and ".layers." in f".{name}"


def _is_ngram(name: str) -> bool:
    return ".embed_ngrams." in f".{name}"


def build_optimizers(model: torch.nn.Module, cfg: TrainConfig,
                     ns_dtype: torch.dtype | None = None) -> list[torch.optim.Optimizer]:
    """ns_dtype: dtype of Muon's Newton-Schulz iteration (the machine's fastest matmul dtype)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    seen: set[int] = set()
    unique = []
    for n, p in named:  # a tied head shares its tensor with the embedding: optimise it once
        if id(p) not in seen:
            seen.add(id(p))
            unique.append((n, p))
    betas = (cfg.beta1, cfg.beta2)
    # the n-gram tables memorise the training text; strong decay keeps the rows of rare n-grams small
    ngram = [p for n, p in unique if _is_ngram(n)]
    ngram_group = [{"params": ngram, "weight_decay": cfg.ngram_weight_decay}] if ngram else []
    unique = [(n, p) for n, p in unique if not _is_ngram(n)]
    if cfg.optimizer == "muon":
        hidden = [p for n, p in unique if _is_hidden_matrix(n, p)]
        rest = [p for n, p in unique if not _is_hidden_matrix(n, p)]
        muon = Muon(hidden, lr=cfg.muon_lr, weight_decay=cfg.weight_decay, momentum=0.95, nesterov=True,
                    ns_dtype=ns_dtype or torch.float32)
        adamw = torch.optim.AdamW([{"params": rest, "weight_decay": 0.0}, *ngram_group], lr=cfg.lr,
                                  betas=betas, eps=1e-10, fused=True)
        return [muon, adamw]
    decay = [p for n, p in unique if p.dim() >= 2]
    no_decay = [p for n, p in unique if p.dim() < 2]
    return [torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}, *ngram_group],
                              lr=cfg.lr, betas=betas, fused=True)]


def lr_multiplier(cfg: TrainConfig, step: int, progress: float) -> float:
    """LR scale in [min_lr_ratio, 1] at `step`, where `progress` in [0, 1] is the share of training done.

    Progress is step/max_steps, or elapsed/time_budget_s for a wall-clock run, so a
    "train for 5 minutes" run warms up, holds and decays exactly like a step-counted one.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    floor = cfg.min_lr_ratio
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "wsd":
        start_decay = 1.0 - cfg.decay_fraction
        if progress < start_decay:
            return 1.0
        return floor + (1.0 - floor) * (1.0 - (progress - start_decay) / cfg.decay_fraction)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizers: list[torch.optim.Optimizer], scale: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * scale
