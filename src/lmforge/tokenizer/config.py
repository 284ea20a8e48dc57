"""The `[tokenizer]` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TokenizerConfig:
    kind: Literal["bpe", "wordpiece", "unigram", "char"] = "bpe"
    vocab_size: int = 4096           # ignored by "char": its vocabulary is the corpus's characters
    min_frequency: int = 2
    split_digits: bool = True        # one token per digit: arithmetic-friendly, as in LLaMA
    pretokenizer: Literal["gpt4", "bytelevel"] = "gpt4"   # bpe: GPT-4's split regex or GPT-2's
    max_train_mb: float = 0.0        # train on at most this much text (0 = all of it)
    model_max_length: int = 2048     # written to tokenizer_config.json for Hugging Face
    val_fraction: float = 0.05       # share of documents held out for validation
    path: str = ""                   # use an existing tokenizer.json (or its folder) instead of training

    def validate(self) -> None:
        if self.kind != "char" and self.vocab_size < 64:
            raise ValueError(f"vocab_size: got {self.vocab_size}, must be >= 64")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction: got {self.val_fraction}, allowed: 0 < v < 0.5")
        if self.max_train_mb < 0 or self.model_max_length < 1:
            raise ValueError("max_train_mb must be >= 0 and model_max_length >= 1")
