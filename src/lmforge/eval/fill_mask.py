"""`lmforge fill-mask`: an encoder's most likely tokens for each masked position of a text."""

from __future__ import annotations

import torch

from lmforge.errors import UserError
from lmforge.tokenizer.specials import MASK

MASK_ALIASES = ("[MASK]",)   # what BERT users type; lmforge tokenizers spell it <|mask|>


@torch.no_grad()
def fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each mask token in `text`, in order: [(token text, probability), ...] best first."""
    for alias in MASK_ALIASES:
        text = text.replace(alias, MASK)
    mask_id = tokenizer.token_to_id(MASK)
    if mask_id is None:
        raise UserError(f"this model's tokenizer has no mask token {MASK}")
    ids = tokenizer.encode(text).ids
    positions = [i for i, t in enumerate(ids) if t == mask_id]
    if not positions:
        raise UserError(f"--text has no mask token: write {MASK} (or [MASK]) where a word is missing")
    if len(ids) > model.cfg.max_seq_len:
        raise UserError(f"--text is {len(ids)} tokens; the model's context is {model.cfg.max_seq_len}")
    probs = torch.softmax(model(torch.tensor([ids])).float()[0, positions], dim=-1)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [[(tokenizer.decode([int(i)]).strip() or tokenizer.id_to_token(int(i)), float(p))
             for p, i in zip(row_p, row_i)] for row_p, row_i in zip(top.values, top.indices)]
