"""Training objectives (see base.py): each one a file, looked up by `train.objective`."""

from __future__ import annotations

from lmforge.errors import UserError
from lmforge.models.registry import family_of
from lmforge.train.objectives.base import Objective
from lmforge.train.objectives.causal_lm import CausalLM
from lmforge.train.objectives.masked_lm import MaskedLM

NAMES = ("causal_lm", "masked_lm")


def build_objective(name: str, model, tokenizer, cfg) -> Objective:
    """The objective `name` for `model`, with what it needs from the tokenizer and `[train]`."""
    family = family_of(model)
    if name not in family.objectives:
        raise UserError(f"train.objective = '{name}' cannot train model.arch = '{family.arch}' "
                        f"(it trains: {', '.join(family.objectives)})")
    if name == "causal_lm":
        return CausalLM(recurrent=family.recurrent, bos_id=tokenizer.token_to_id("<|bos|>"))
    return MaskedLM(tokenizer, probability=cfg.mlm_probability, whole_word=cfg.whole_word_masking)


__all__ = ["NAMES", "Objective", "CausalLM", "MaskedLM", "build_objective"]
