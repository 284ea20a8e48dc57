"""Masked language modelling, as BERT trains: predict tokens hidden from a bidirectional model.

Of the tokens that are not special (BOS, EOS, padding, the chat tokens...), `mlm_probability`
are selected; of those, 80% become the mask token, 10% a random ordinary token and 10% stay
as they are. The loss is over the selected positions only. With whole-word masking, words
are selected instead of tokens and all their pieces go together. The selection at step s is
a pure function of (seed, s, micro-batch), so resume is exact; the validation sample is
masked once, the same way at every validation.
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.train.objectives.base import Objective
from lmforge.train.objectives.causal_lm import token_losses


def word_starts(vocab: dict[str, int], specials: set[int]) -> torch.Tensor:
    """bool (vocab,): does the token begin a word? WordPiece marks continuations with '##';
    byte-level BPE and SentencePiece mark beginnings with 'Ġ' and '▁'."""
    starts = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
    if any(t.startswith("##") for t in vocab):
        for t, i in vocab.items():
            starts[i] = not t.startswith("##")
    elif any(t.startswith(("Ġ", "▁")) for t in vocab):
        for t, i in vocab.items():
            starts[i] = t.startswith(("Ġ", "▁")) or not t[:1].isalnum()
    else:
        raise UserError("train.whole_word_masking needs a WordPiece, byte-level BPE or unigram tokenizer "
                        "(it finds words by their '##', 'Ġ' or '▁' marks); set it to false")
    starts[list(specials)] = True
    return starts


def mask_tokens(ids: torch.Tensor, gen: torch.Generator, *, mask_id: int, special: torch.Tensor,
                probability: float, starts: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """BERT's 80/10/10 corruption of `ids` (B, T): {"input_ids", "labels"} (labels -100 where unselected).

    special: bool (vocab,), tokens never selected and never drawn as random replacements."""
    candidates = ~special[ids]
    if starts is None:
        selected = candidates & (torch.rand(ids.shape, generator=gen) < probability)
    else:   # number the words of each row; select whole words
        begins = starts[ids] | ~candidates
        word = torch.cumsum(begins.long(), dim=1)
        chosen = torch.rand(ids.shape[0], ids.shape[1] + 1, generator=gen) < probability
        selected = candidates & chosen.gather(1, word)
    if not bool(selected.any()):   # a loss needs at least one target
        flat = torch.nonzero(candidates.flatten())
        if len(flat):
            pick = flat[torch.randint(len(flat), (1,), generator=gen)]
            selected.view(-1)[pick] = True
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=gen)
    ordinary = torch.nonzero(~special).flatten()
    random_ids = ordinary[torch.randint(len(ordinary), ids.shape, generator=gen)]
    corrupted = torch.where(selected & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    corrupted = torch.where(selected & (roll >= 0.8) & (roll < 0.9), random_ids, corrupted)
    return {"input_ids": corrupted, "labels": labels}


class _Masked:
    """Windows of a token source, masked by a generator seeded from (seed, step, row block): the
    same rows get the same masks whether they are one rank's micro-batch or another rank's."""

    def __init__(self, source, objective: "MaskedLM", seed: int):
        self.source, self.objective, self.seed = source, objective, seed
        self.seq_len, self.global_batch = source.seq_len, source.global_batch

    def get(self, step: int, micro: int) -> dict:
        block = self.source.rank * self.source.grad_accum + micro
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + step) * 4096 + block + 17)
        return self.objective.mask(self.source.get(step, micro)["input_ids"], gen)


class MaskedLM(Objective):
    name = "masked_lm"

    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False):
        specials = set(tokenizer.get_added_tokens_decoder())
        self.mask_id = tokenizer.token_to_id("<|mask|>")
        if self.mask_id is None:
            raise UserError("the tokenizer has no mask token <|mask|>, which masked-LM training needs: "
                            "train one with lmforge (leave tokenizer.path empty) or give tokenizer.path "
                            "a tokenizer.json that has <|mask|>")
        self.special = torch.zeros(tokenizer.get_vocab_size(with_added_tokens=True), dtype=torch.bool)
        self.special[list(specials)] = True
        self.probability = probability
        self.starts = word_starts(tokenizer.get_vocab(with_added_tokens=True), specials) if whole_word else None

    def mask(self, ids: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        return mask_tokens(ids, gen, mask_id=self.mask_id, special=self.special, probability=self.probability,
                           starts=self.starts)

    def train_batches(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int,
                      grad_accum: int = 1, rank: int = 0, world: int = 1, mix=None):
        return _Masked(super().train_batches(tokens, seq_len, batch_size, seed, grad_accum, rank, world, mix),
                       self, seed)

    def val_batches(self, tokens: np.ndarray, seq_len: int, n_windows: int, batch_size: int,
                    seed: int) -> list[dict]:
        gen = torch.Generator().manual_seed(seed + 104729)
        return [self.mask(b["input_ids"], gen) for b in super().val_batches(tokens, seq_len, n_windows,
                                                                             batch_size, seed)]

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        selected = batch["labels"] != -100
        labels = batch["labels"][selected]
        logits = model(batch["input_ids"], predict=selected)       # (masked tokens, vocab)
        accuracy = (logits.detach().argmax(-1) == labels).float().sum() / max(len(labels), 1)
        return token_losses(logits, labels), {"mlm_accuracy": accuracy}
