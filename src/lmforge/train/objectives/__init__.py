"""Training objectives (see base.py): each one a file, looked up by `train.objective`."""

from __future__ import annotations

from lmforge.errors import UserError
from lmforge.models.registry import family_of
from lmforge.tokenizer.load import special_ids
from lmforge.train.objectives.base import Objective
from lmforge.train.objectives.causal_lm import CausalLM
from lmforge.train.objectives.classify import Classify
from lmforge.train.objectives.contrastive import Contrastive
from lmforge.train.objectives.dpo import DPO
from lmforge.train.objectives.masked_lm import MaskedLM
from lmforge.train.objectives.sft import SFT

NAMES = ("causal_lm", "masked_lm", "sft", "dpo", "classify", "contrastive")


def build_objective(name: str, model, tokenizer, cfg, examples: dict | None = None) -> Objective:
    """The objective `name` for `model`, with what it needs from the tokenizer and `[train]`
    (sft: `examples`, the run's rendered conversations by split; dpo: its rendered pairs by split and
    their cached reference log-probabilities, "train_reference" and "val_reference"; classify: its
    (ids, label index) examples by split; contrastive: its (caption ids, image row, caption group)
    pairs by split and the images' "pixels")."""
    family = family_of(model)
    if name not in family.objectives:
        raise UserError(f"train.objective = '{name}' cannot train model.arch = '{family.arch}' "
                        f"(it trains: {', '.join(family.objectives)})")
    if name == "causal_lm":
        return CausalLM(recurrent=family.recurrent, bos_id=tokenizer.token_to_id("<|bos|>"))
    if name == "dpo":
        return DPO(examples["train"], examples["val"], examples["train_reference"], examples["val_reference"],
                   pad_id=tokenizer.token_to_id("<|pad|>") or 0, beta=cfg.dpo_beta)
    if name == "classify":
        return Classify(examples["train"], examples["val"], pad_id=special_ids(tokenizer)["pad"] or 0,
                        seq_len=cfg.seq_len or model.cfg.max_seq_len)
    if name == "contrastive":
        return Contrastive(examples["train"], examples["val"], examples["pixels"],
                           pad_id=special_ids(tokenizer)["pad"] or 0, seq_len=cfg.seq_len or model.cfg.max_seq_len)
    if name == "sft":
        return SFT(examples["train"], examples["val"], pad_id=tokenizer.token_to_id("<|pad|>") or 0,
                   seq_len=cfg.seq_len or model.cfg.max_seq_len)
    return MaskedLM(tokenizer, probability=cfg.mlm_probability, whole_word=cfg.whole_word_masking)


__all__ = ["NAMES", "Objective", "CausalLM", "Classify", "Contrastive", "DPO", "MaskedLM", "SFT", "build_objective"]
