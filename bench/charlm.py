"""Shared set-up for the training benchmarks: nanoGPT's character-level Shakespeare task
and the two recipes compared on it (nanoGPT's CPU recipe as the baseline, and lmforge's).

Data as nanoGPT prepares it: the characters of the file are the vocabulary, the first 90%
is training text and the last 10% validation text.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lmforge.models.llama import LlamaConfig
from lmforge.models.llama import Transformer
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig
from lmforge.train.loop import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
VAL_WINDOWS = 1024          # fixed validation sample: 1024 windows x 64 = 65k characters


def load_chars(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    text = Path(path).read_text(encoding="utf-8")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    data = np.fromiter((index[c] for c in text), dtype=np.uint16, count=len(text))
    n = int(0.9 * len(data))
    return data[:n], data[n:], len(vocab)


# nanoGPT's README CPU recipe: 4 layers, 4 heads, 128 wide, block 64, batch 12, AdamW lr 1e-3,
# beta2 0.99, 100 warmup iterations, cosine to 1e-4 over 2000 iterations, dropout 0, fp32.
BASELINE = dict(
    model=LlamaConfig(preset="gpt2-char"),
    train=TrainConfig(batch_size=12, seq_len=64, max_steps=2000, optimizer="adamw", lr=1e-3, beta2=0.99,
                      weight_decay=0.1, grad_clip=1.0, schedule="cosine", warmup_steps=100, min_lr_ratio=0.1,
                      dtype="float32"))

# lmforge's CPU recipe: the modern architecture (RoPE, RMSNorm, QK-norm, ReLU^2, untied head,
# zero-initialised projections) trained with Muon + AdamW on a wall-clock warmup-stable-decay schedule.
LMFORGE = dict(
    model=LlamaConfig(n_layer=4, n_head=4, d_model=128, max_seq_len=64, norm="rmsnorm", positions="rope",
                      mlp="relu2", qk_norm=True, tie_embeddings=False, zero_init_out=True),
    train=TrainConfig(batch_size=32, seq_len=64, max_steps=1, time_budget_s=100, optimizer="muon", lr=3e-3,
                      muon_lr=0.03, beta2=0.95, weight_decay=0.0, grad_clip=1.0, schedule="wsd",
                      warmup_steps=20, decay_fraction=0.4, min_lr_ratio=0.0, dtype="auto"))

RECIPES = {"baseline": BASELINE, "lmforge": LMFORGE}

# Model size by wall-clock budget. In a short budget a small model wins: it sees many more
# characters per second (measured on 2 cores, docs/experiments.md); a bigger one wins once
# there is time to train it. Hashed n-gram embeddings (models/llama/ngram.py), with their default
# dropout and weight decay, lower the loss at every budget measured (docs/experiments.md:
# 100 s about 1.54 against 1.62, 600 s 1.479 against 1.496-1.505). Entries: (largest budget
# in seconds, layers, width, n-gram orders).
SIZE_FOR_BUDGET = [(25, 1, 64, [2, 3, 4]), (200, 1, 128, [2, 3, 4]), (math.inf, 4, 128, [2, 3, 4])]


def lmforge_for_budget(budget_s: float) -> dict:
    """lmforge's recipe with the model chosen for a `budget_s`-second run."""
    n_layer, d_model, orders = next((n, d, o) for limit, n, d, o in SIZE_FOR_BUDGET if budget_s <= limit)
    return dict(model=replace(LMFORGE["model"], n_layer=n_layer, d_model=d_model, ngram_orders=orders),
                train=replace(LMFORGE["train"], time_budget_s=budget_s))


def build_trainer(recipe: dict, train_tokens, val_tokens, vocab: int, *, seed: int = 0, log=None,
                  time_budget_s: float | None = None, **train_overrides) -> Trainer:
    """A Trainer for `recipe`; with time_budget_s a step-counted recipe is also capped at that budget."""
    mcfg = replace(recipe["model"].resolved(), vocab_size=vocab)
    tcfg = replace(recipe["train"], **train_overrides)
    if time_budget_s is not None and tcfg.time_budget_s:
        tcfg = replace(tcfg, time_budget_s=time_budget_s)
    torch.manual_seed(seed)
    model = Transformer(mcfg)
    batches = TokenBatches(train_tokens, tcfg.seq_len, tcfg.batch_size, seed, tcfg.grad_accum)
    val = fixed_windows(val_tokens, 64, VAL_WINDOWS, 128, seed=0)
    return Trainer(model, tcfg, batches, val, seed=seed, log=log)
