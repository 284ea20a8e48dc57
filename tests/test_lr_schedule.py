"""The learning-rate schedule's shape, in exact values, and the trainer applying it step by step."""

import math

import numpy as np
import pytest

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train import loop
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig
from lmforge.train.optim import lr_multiplier


def test_warmup_is_linear_from_one_step_to_the_peak():
    cfg = TrainConfig(warmup_steps=4, schedule="cosine", max_steps=100)
    assert [lr_multiplier(cfg, s, s / 100) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(cfg, 4, 0.04) < 1.0          # decay starts right after warm-up


def test_cosine_halves_at_mid_run_and_ends_at_the_floor():
    cfg = TrainConfig(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_multiplier(cfg, 0, 0.0) == 1.0
    assert lr_multiplier(cfg, 50, 0.5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(cfg, 25, 0.25) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_multiplier(cfg, 100, 1.0) == pytest.approx(0.1)
    assert lr_multiplier(cfg, 200, 2.0) == pytest.approx(0.1)    # past the end it stays at the floor


def test_wsd_holds_then_decays_linearly_over_its_last_fraction():
    cfg = TrainConfig(warmup_steps=0, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0)
    assert [lr_multiplier(cfg, 0, p) for p in (0.0, 0.5, 0.79)] == [1.0, 1.0, 1.0]
    assert lr_multiplier(cfg, 0, 0.9) == pytest.approx(0.5)
    assert lr_multiplier(cfg, 0, 0.85) == pytest.approx(0.75)
    assert lr_multiplier(cfg, 0, 1.0) == pytest.approx(0.0)


def test_constant_is_one_after_warmup():
    cfg = TrainConfig(warmup_steps=2, schedule="constant")
    assert [lr_multiplier(cfg, s, s / 10) for s in range(5)] == [0.5, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_trainer_uses_the_schedule_at_every_step(optimizer):
    tokens = np.random.default_rng(0).integers(0, 32, 4096).astype(np.uint16)
    cfg = TrainConfig(batch_size=2, seq_len=16, max_steps=12, warmup_steps=3, schedule="cosine", min_lr_ratio=0.1,
                      lr=0.01, muon_lr=0.02, optimizer=optimizer, eval_every=0, checkpoint_every=0,
                      keep_best=False, log_every=1, dtype="float32")
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())
    records = []
    trainer = loop.Trainer(model, cfg, TokenBatches(tokens, 16, 2, 0), fixed_windows(tokens, 16, 4, 4),
                           seed=0, log=records.append)
    trainer.fit()
    lrs = [r["lr"] for r in records if r["kind"] == "train"]
    assert lrs == pytest.approx([0.01 * lr_multiplier(cfg, s, s / 12) for s in range(12)])
    assert lrs[:3] == pytest.approx([0.01 / 3, 0.02 / 3, 0.01])
    if optimizer == "muon":      # Muon's matrices follow the same multiplier from their own peak
        assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.02 * lr_multiplier(cfg, 11, 11 / 12))
