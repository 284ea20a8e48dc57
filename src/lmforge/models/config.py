"""The `[model]` section: the fields every family shares, and the choice of family.

Each family (models/<family>/config.py) extends `ModelConfig` with its own fields
and named presets. A recipe's `[model]` table picks its dataclass by `arch` (or by
the family that owns its `preset`), so a key the family does not have is an error
that names the family, and the resolved recipe lists exactly that family's fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from lmforge.errors import UserError


@dataclass
class ModelConfig:
    arch: str = "llama"              # the family: llama, bert, clip, lstm, gru or rnn
    preset: str = ""                 # a name from the family's presets; explicit keys win over it
    vocab_size: int = 0              # 0 = take it from the tokenizer
    init_from: str = ""              # a run or checkpoint directory: start from its weights, config and tokenizer
    n_layer: int = 4
    d_model: int = 256
    max_seq_len: int = 256           # the context (for recurrent families: the training window)
    dropout: float = 0.0
    tie_embeddings: bool = False
    init_std: float = 0.02
    labels: list[str] = field(default_factory=list)   # a classifier's label names (set from the data by
                                                      # train.objective = "classify"; empty: no head)

    PRESETS: ClassVar[dict[str, dict]] = {}

    # ---------------------------------------------------------------- the family's table
    @staticmethod
    def select(raw: dict) -> type["ModelConfig"]:
        """The config dataclass a recipe's `[model]` table describes (by arch, else by preset)."""
        from lmforge.models.registry import families, family_of_preset
        arch = raw.get("arch")
        preset = raw.get("preset")
        if arch is None and isinstance(preset, str) and preset:
            arch = family_of_preset(preset) or "llama"
        arch = arch or "llama"
        table = families()
        if arch not in table:
            raise UserError(f"model.arch: got {arch!r}, allowed: {', '.join(sorted(table))}")
        return table[arch].config

    def validate(self) -> None:
        from lmforge.models.registry import family_of_preset
        if self.preset and self.preset not in self.PRESETS:
            owner = family_of_preset(self.preset)
            where = f" (it is a preset of arch '{owner}')" if owner else ""
            raise ValueError(f"preset: got {self.preset!r}{where}; presets of arch '{self.arch}': "
                             f"{', '.join(sorted(self.PRESETS))}")
        for name in ("n_layer", "d_model", "max_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: got {self.dropout}, allowed: 0 <= dropout < 1")
        if self.vocab_size < 0:
            raise ValueError(f"vocab_size: got {self.vocab_size}, must be >= 0")

    def resolved(self) -> "ModelConfig":
        """Apply the preset under the explicitly given fields."""
        if not self.preset:
            return self
        cls = type(self)
        base = cls(**{"arch": self.arch, **self.PRESETS[self.preset]})
        defaults = cls(arch=self.arch)
        changes = {f.name: getattr(self, f.name) for f in fields(self)
                   if getattr(self, f.name) != getattr(defaults, f.name)}
        return replace(base, **changes)

    def num_params(self, vocab_size: int | None = None) -> int:
        import torch
        from lmforge.models.registry import build_model
        with torch.device("meta"):
            m = build_model(replace(self.resolved(), vocab_size=vocab_size or self.vocab_size or 256))
        return sum(p.numel() for p in m.parameters())
