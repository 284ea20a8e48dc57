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
            for start in range(0, len(inputs), BATCH):
                chunk = inputs[start:start + BATCH]
                width = max(len(ids) for ids in chunk)
                ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, seq in enumerate(chunk):
                    ids[row, :len(seq)] = torch.tensor(seq)
                    mask[row, :len(seq)] = 1
                out.append(F.normalize(self.family.features(self.model, ids, mask).float(), dim=-1))
        return torch.cat(out)
