"""The optimizers' parameter groups by role, the learning-rate schedule's shape in exact values,
and the trainer applying it step by step."""

import math

import numpy as np
import pytest
import torch

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train import loop
from lmforge.train.batches import TokenBatches, fixed_windows
from lmforge.train.config import TrainConfig
from lmforge.models.registry import family_of
from lmforge.train.muon import Muon
from lmforge.train.optim import build_optimizers, lr_multiplier


def _model_with_tables():
    return Transformer(LlamaConfig(preset="tiny", vocab_size=32, max_seq_len=16, ngram_orders=[2],
                                   ngram_buckets=64, ngram_dim=8).resolved())


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _by_role(model) -> dict[str, set[int]]:
    params, out = dict(model.named_parameters()), {}
    for name, role in family_of(model).param_roles(model).items():
        out.setdefault(role, set()).add(id(params[name]))
    return out


def test_muon_takes_the_matrices_and_adamw_the_rest_without_decay():
    model = _model_with_tables()
    roles = _by_role(model)
    assert roles["table"] and roles["matrix"] and roles["vector"]
    cfg = TrainConfig(optimizer="muon", lr=0.01, muon_lr=0.03, weight_decay=0.05, ngram_weight_decay=0.5,
                      beta1=0.8, beta2=0.9)
    muon, adamw = build_optimizers(model, cfg, ns_dtype=torch.bfloat16)
    assert isinstance(muon, Muon) and muon.ns_dtype == torch.bfloat16
    (mg,) = muon.param_groups
    assert _ids(mg["params"]) == roles["matrix"]
    assert (mg["lr"], mg["weight_decay"], mg["momentum"], mg["nesterov"]) == (0.03, 0.05, 0.95, True)
    others, tables = adamw.param_groups
    assert _ids(others["params"]) == roles["embedding"] | roles["head"] | roles["vector"]
    assert others["weight_decay"] == 0.0 and _ids(tables["params"]) == roles["table"]
    assert tables["weight_decay"] == 0.5
    for g in adamw.param_groups:
        assert (g["lr"], g["betas"], g["eps"], g["fused"]) == (0.01, (0.8, 0.9), 1e-10, True)
    assert build_optimizers(model, cfg)[0].ns_dtype == torch.float32      # without a faster dtype


def test_adamw_alone_decays_matrices_embeddings_and_head_only():
    model = _model_with_tables()
    roles = _by_role(model)
    cfg = TrainConfig(optimizer="adamw", lr=0.01, weight_decay=0.05, ngram_weight_decay=0.5, beta1=0.8, beta2=0.9)
    (adamw,) = build_optimizers(model, cfg)
    decayed, vectors, tables = adamw.param_groups
    assert _ids(decayed["params"]) == roles["matrix"] | roles["embedding"] | roles["head"]
    assert decayed["weight_decay"] == 0.05 and vectors["weight_decay"] == 0.0 and tables["weight_decay"] == 0.5
    assert _ids(vectors["params"]) == roles["vector"] and _ids(tables["params"]) == roles["table"]
    for g in adamw.param_groups:
        assert (g["lr"], g["betas"], g["fused"]) == (0.01, (0.8, 0.9), True)


def test_frozen_parameters_go_to_no_optimizer():
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=32, max_seq_len=16).resolved())
    model.model.embed_tokens.weight.requires_grad_(False)
    grouped = [id(p) for opt in build_optimizers(model, TrainConfig()) for g in opt.param_groups for p in g["params"]]
    assert id(model.model.embed_tokens.weight) not in grouped
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)   # each once


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
    floored = TrainConfig(warmup_steps=0, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.1)
    assert lr_multiplier(floored, 0, 0.9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(floored, 0, 1.0) == pytest.approx(0.1)


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
