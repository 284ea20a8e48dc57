"""A wall-clock training budget: the run ends within it, with its schedule decayed."""

import json
import shutil
import types

import numpy as np
import torch

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train import checkpoint, loop
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig
from lmforge.train.objectives import CausalLM


def _steps_of(monkeypatch, seconds: float) -> None:
    """The trainer's clock, made to advance `seconds` between any two readings."""
    ticks = iter(range(10_000))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: seconds * next(ticks)))


def _budget_trainer(ckpt_dir=None, objective=None, **train):
    """A trainer on random tokens with a 1-s wall-clock budget (changed by `train`)."""
    tokens = np.random.default_rng(0).integers(0, 32, 4096).astype(np.uint16)
    cfg = TrainConfig(**{**dict(batch_size=2, seq_len=16, time_budget_s=1.0, schedule="wsd", warmup_steps=0,
                                decay_fraction=0.5, min_lr_ratio=0.0, eval_every=0, checkpoint_every=0,
                                keep_best=False, log_every=1000, dtype="float32"), **train})
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())
    records = []
    trainer = loop.Trainer(model, cfg, TokenBatches(tokens, 16, 2, 0), fixed_windows(tokens, 16, 4, 4),
                           seed=0, ckpt_dir=ckpt_dir, log=records.append, objective=objective)
    return trainer, records


def test_time_budget_run_stops_before_a_step_would_overrun_it(monkeypatch):
    # a 1-s budget has room for 3 steps of 0.3 s (0.9 s), not a 4th
    _steps_of(monkeypatch, 0.3)
    trainer, records = _budget_trainer()
    state = trainer.fit()
    assert state.step == 3
    assert state.train_seconds <= trainer.cfg.time_budget_s
    assert [r["kind"] for r in records if r["kind"] == "val"] == ["val"]   # validated once, at the end
    # the last step started at 0.6 of the budget, a fifth of the way into the decay
    torch.testing.assert_close(trainer.optimizers[-1].param_groups[0]["lr"], trainer.cfg.lr * 0.8)


def test_resumed_run_expects_its_average_step_time_before_the_budget(monkeypatch, tmp_path):
    # stopped at 0.9 s of its 1-s budget; the resumed run has timed no step yet, and must not
    # run a 4th one (to 1.2 s) for lack of one
    _steps_of(monkeypatch, 0.3)
    first, _ = _budget_trainer(tmp_path)
    assert first.fit(max_seconds=0.95).step == 3
    resumed, _ = _budget_trainer(tmp_path)
    assert resumed.resume() == 3
    state = resumed.fit()
    assert state.step == 3
    assert state.train_seconds <= resumed.cfg.time_budget_s


def test_run_resumed_at_its_end_still_validates_and_saves_there(monkeypatch, tmp_path):
    # steps take 0.5 s, then 0.1 s each: the run continues from 0.9 s (a 0.1-s step fits in 1.05 s),
    # but a resume from the 0.9-s checkpoint expects the 0.18-s average step and trains no more
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    class TimedObjective(CausalLM):
        def loss(self, model, batch):
            if model.training:
                clock.now += 0.5 if clock.now == 0.0 else 0.1
            return super().loss(model, batch)

    timed_objective = TimedObjective()

    def trainer():
        return _budget_trainer(tmp_path, timed_objective, time_budget_s=1.05, checkpoint_every=1, keep_last=10)[0]

    assert trainer().fit().step == 6
    shutil.rmtree(checkpoint.list_steps(tmp_path)[-1])   # killed before the last checkpoint was written
    resumed = trainer()
    assert resumed.resume() == 5
    state = resumed.fit()
    assert state.step == 5
    assert [s for s, _, _ in state.val_history] == [5]
    newest = checkpoint.list_steps(tmp_path)[-1]   # saved again, now with the validation
    assert json.loads((newest / "state.json").read_text())["val_history"] == state.val_history
