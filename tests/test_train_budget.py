"""A wall-clock training budget: the run ends within it, with its schedule decayed."""

import types

import numpy as np
import torch

from lmforge.models.config import ModelConfig
from lmforge.models.transformer import Transformer
from lmforge.train import loop
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig


def test_time_budget_run_stops_before_a_step_would_overrun_it(monkeypatch):
    # every step takes 0.3 s on this clock, so a 1-s budget has room for 3 steps (0.9 s), not a 4th
    ticks = iter(range(10_000))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: 0.3 * next(ticks)))
    tokens = np.random.default_rng(0).integers(0, 32, 4096).astype(np.uint16)
    cfg = TrainConfig(batch_size=2, seq_len=16, time_budget_s=1.0, schedule="wsd", warmup_steps=0,
                      decay_fraction=0.5, min_lr_ratio=0.0, eval_every=0, checkpoint_every=0,
                      keep_best=False, log_every=1000, dtype="float32")
    model = Transformer(ModelConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())
    records = []
    trainer = loop.Trainer(model, cfg, TokenBatches(tokens, 16, 2, 0), fixed_windows(tokens, 16, 4, 4),
                           seed=0, log=records.append)
    state = trainer.fit()
    assert state.step == 3
    assert state.train_seconds <= cfg.time_budget_s
    assert [r["kind"] for r in records if r["kind"] == "val"] == ["val"]   # validated once, at the end
    # the last step started at 0.6 of the budget, a fifth of the way into the decay
    torch.testing.assert_close(trainer.optimizers[-1].param_groups[0]["lr"], cfg.lr * 0.8)
