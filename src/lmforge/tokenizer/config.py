"""The `[tokenizer]` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TokenizerConfig:
    kind: Literal["bpe", "wordpiece", "unigram", "char"] = "bpe"
    vocab_size: int = 4096
    min_frequency: int = 2
    split_digits: bool = True
    val_fraction: float = 0.05       # share of documents held out for validation
    path: str = ""                   # use an existing tokenizer.json instead of training one

    def validate(self) -> None:
        if self.kind != "char" and self.vocab_size < 64:
            raise ValueError(f"vocab_size: got {self.vocab_size}, must be >= 64")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction: got {self.val_fraction}, allowed: 0 < v < 0.5")
