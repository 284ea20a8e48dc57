"""The recurrent families' config (`lstm`, `gru`, `rnn` = Elman tanh) and their presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lmforge.models.config import ModelConfig

CELLS = ("lstm", "gru", "rnn")


@dataclass
class RNNConfig(ModelConfig):
    arch: str = "lstm"
    n_layer: int = 2
    d_model: int = 512               # embedding width = hidden width (the head is tied to the embedding)
    max_seq_len: int = 128           # truncated back-propagation window; generation is not limited by it
    dropout: float = 0.1             # on the embedding, between layers and before the head
    tie_embeddings: bool = True

    PRESETS: ClassVar[dict[str, dict]] = {}

    @property
    def state_parts(self) -> int:
        """An LSTM carries a hidden and a cell state; a GRU and a tanh RNN only a hidden state."""
        return 2 if self.arch == "lstm" else 1

    def validate(self) -> None:
        super().validate()
        if self.arch not in CELLS:
            raise ValueError(f"arch: got {self.arch!r}, recurrent cells: {', '.join(CELLS)}")


RNNConfig.PRESETS = {
    "rnn-tiny": dict(n_layer=1, d_model=64, max_seq_len=64),
    "rnn-mini": dict(n_layer=2, d_model=256, max_seq_len=128),
    "rnn-small": dict(n_layer=2, d_model=512, max_seq_len=128),
}
