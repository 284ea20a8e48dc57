"""Texts in, one unit-length vector each out (`POST /v1/embeddings`).

The vector is the family's sequence features, the one a classifier head reads: the mean of the
encoder's states over a text's tokens for `bert` (mBERT-style sentence embeddings), the last
token's state for the causal families, which has read the whole text. Texts are batched
right-padded with an attention mask, so a text's vector does not depend on its neighbours.
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.models.io import find_weights, load_model
from lmforge.models.registry import family_of
from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer, special_ids
from lmforge.train.objectives.classify import label_batch

BATCH = 32


class Embedder:
    def __init__(self, model, tokenizer, threads: int | None = None):
        self.model, self.tokenizer, self.threads = model.eval(), tokenizer, threads
        self.family = family_of(model)
        self.pad_id = special_ids(tokenizer)["pad"] or 0
        self.context = model.cfg.max_seq_len
        self.dimensions = model.cfg.d_model
        self._lock = threading.Lock()     # one forward at a time: torch threads are shared

    @classmethod
    def from_run(cls, path: str | Path, threads: int | None = None) -> "Embedder":
        ckpt = find_weights(path)
        return cls(load_model(ckpt), load_tokenizer(find_tokenizer_dir(Path(path), ckpt)), threads)

    def encode(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(texts)]

    def check(self, inputs: list[list[int]]) -> None:
        vocab = self.model.cfg.vocab_size
        for i, ids in enumerate(inputs):
            if not ids:
                raise UserError(f"input[{i}] is empty")
            if len(ids) > self.context:
                raise UserError(f"input[{i}] is {len(ids)} tokens; the model's context is {self.context}")
            if not all(isinstance(t, int) and 0 <= t < vocab for t in ids):
                raise UserError(f"input[{i}]: token ids must be integers in [0, {vocab})")

    @torch.no_grad()
    def embed(self, inputs: list[list[int]]) -> torch.Tensor:
        """(N, d) float32 unit vectors of token-id sequences, in order."""
        self.check(inputs)
        out = []
        with self._lock:
            if self.threads:
                torch.set_num_threads(self.threads)
            examples = [(ids, 0) for ids in inputs]     # classification's padded batches, labels unused
            for start in range(0, len(inputs), BATCH):
                b = label_batch(examples, list(range(start, min(start + BATCH, len(inputs)))), self.context,
                                self.pad_id)
                features = self.family.features(self.model, b["input_ids"], b["attention_mask"])
                out.append(F.normalize(features.float(), dim=-1))
        return torch.cat(out)
