"""Optimizers and learning-rate schedules.

With `optimizer = "muon"`, the parameters whose role is "matrix" (attention, MLP and
recurrent weights) go to Muon and everything else (embeddings, head, norms, biases) to
AdamW, the split modded-nanogpt found best; with "adamw" everything goes to AdamW,
with weight decay only on matrices. The n-gram tables (role "table"), if any, go to
AdamW in both cases, in a group of their own with `ngram_weight_decay`. LoRA's matrices
(role "adapter") go to AdamW in both cases. Frozen parameters go nowhere.
"""

from __future__ import annotations

import math

import torch

from lmforge.models.registry import ROLES, family_of
from lmforge.train.config import TrainConfig
from lmforge.train.muon import Muon


def build_optimizers(model: torch.nn.Module, cfg: TrainConfig,
                     ns_dtype: torch.dtype | None = None) -> list[torch.optim.Optimizer]:
    """ns_dtype: dtype of Muon's Newton-Schulz iteration (the machine's fastest matmul dtype).

    Parameters are split by the role their family gives them (models/registry.py)."""
    roles = family_of(model).param_roles(model)
    params = dict(model.named_parameters())
    by_role: dict[str, list] = {role: [] for role in ROLES}
    for name, role in roles.items():
        if params[name].requires_grad:
            by_role[role].append(params[name])
    betas = (cfg.beta1, cfg.beta2)
    # the n-gram tables memorise the training text; strong decay keeps the rows of rare n-grams small
    table_group = [{"params": by_role["table"], "weight_decay": cfg.ngram_weight_decay}] if by_role["table"] else []
    others = by_role["embedding"] + by_role["head"] + by_role["vector"] + by_role["adapter"]
    if cfg.optimizer == "muon":
        muon = Muon(by_role["matrix"], lr=cfg.muon_lr, weight_decay=cfg.weight_decay, momentum=0.95,
                    nesterov=True, ns_dtype=ns_dtype or torch.float32)
        adamw = torch.optim.AdamW([{"params": others, "weight_decay": 0.0}, *table_group], lr=cfg.lr,
                                  betas=betas, eps=1e-10, fused=True)
        return [muon, adamw]
    decay = by_role["matrix"] + by_role["embedding"] + by_role["head"] + by_role["adapter"]
    return [torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": by_role["vector"], "weight_decay": 0.0}, *table_group],
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
