"""The `bert` family's config: a bidirectional encoder (BERT's architecture), and its presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmforge.models.config import ModelConfig


@dataclass
class BertConfig(ModelConfig):
    arch: str = "bert"
    n_head: int = 4
    d_ff: int = 0                    # 0 = 4 * d_model
    max_seq_len: int = 128           # learned absolute positions
    type_vocab_size: int = 2         # token-type (segment) embeddings; 0 = none
    norm_eps: float = 1e-12
    dropout: float = 0.1             # on embeddings, attention probabilities and residual branches
    tie_embeddings: bool = True      # the MLM decoder shares the input embedding (as BERT does)

    PRESETS: ClassVar[dict[str, dict]] = {}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    def validate(self) -> None:
        super().validate()
        if self.n_head < 1 or self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.type_vocab_size < 0:
            raise ValueError(f"type_vocab_size: got {self.type_vocab_size}, must be >= 0")


# bert-tiny/mini/small follow the sizes of Google's compact BERTs (Turc et al., 2019)
BertConfig.PRESETS = {
    "bert-tiny": dict(n_layer=2, n_head=2, d_model=128, max_seq_len=128),
    "bert-mini": dict(n_layer=4, n_head=4, d_model=256, max_seq_len=128),
    "bert-small": dict(n_layer=4, n_head=8, d_model=512, max_seq_len=256),
    "bert-base": dict(n_layer=12, n_head=12, d_model=768, max_seq_len=512),
}
