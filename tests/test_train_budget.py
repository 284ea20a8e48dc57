"""A wall-clock training budget: the run ends within it, with its schedule decayed."""

import types

import numpy as np
import torch

from lmforge.models.config import ModelConfig
from lmforge.models.transformer import Transformer
from lmforge.train import loop
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig


def _budget_trainer(monkeypatch, ckpt_dir=None):
    """A 1-s budget run on a fake clock where every step takes 0.3 s."""
    ticks = iter(range(10_000))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: 0.3 * next(ticks)))
    tokens = np.random.default_rng(0).integers(0, 32, 4096).astype(np.uint16)
    cfg = TrainConfig(batch_size=2, seq_len=16, time_budget_s=1.0, schedule="wsd", warmup_steps=0,
                      decay_fraction=0.5, min_lr_ratio=0.0, eval_every=0, checkpoint_every=0,
                      keep_best=False, log_every=1000, dtype="float32")
    model = Transformer(ModelConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())
    records = []
    trainer = loop.Trainer(model, cfg, TokenBatches(tokens, 16, 2, 0), fixed_windows(tokens, 16, 4, 4),
                           seed=0, ckpt_dir=ckpt_dir, log=records.append)
    return trainer, records


def test_time_budget_run_stops_before_a_step_would_overrun_it(monkeypatch):
    # a 1-s budget has room for 3 steps of 0.3 s (0.9 s), not a 4th
    trainer, records = _budget_trainer(monkeypatch)
    state = trainer.fit()
    assert state.step == 3
    assert state.train_seconds <= trainer.cfg.time_budget_s
    assert [r["kind"] for r in records if r["kind"] == "val"] == ["val"]   # validated once, at the end
    # the last step started at 0.6 of the budget, a fifth of the way into the decay
    torch.testing.assert_close(trainer.optimizers[-1].param_groups[0]["lr"], trainer.cfg.lr * 0.8)


def test_resumed_run_expects_its_average_step_time_before_the_budget(monkeypatch, tmp_path):
    # stopped at 0.9 s of its 1-s budget; the resumed run has timed no step yet, and must not
    # run a 4th one (to 1.2 s) for lack of one
    first, _ = _budget_trainer(monkeypatch, tmp_path)
    assert first.fit(max_seconds=0.95).step == 3
    resumed, _ = _budget_trainer(monkeypatch, tmp_path)
    assert resumed.resume() == 3
    state = resumed.fit()
    assert state.step == 3
    assert state.train_seconds <= resumed.cfg.time_budget_s
