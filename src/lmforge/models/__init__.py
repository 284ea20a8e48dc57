"""Model families (see registry.py): llama (decoder), bert (encoder), lstm/gru/rnn (recurrent)."""

from lmforge.models.config import ModelConfig
from lmforge.models.io import load_model
from lmforge.models.registry import Family, build_model, families, family_of, get_family

__all__ = ["ModelConfig", "Family", "build_model", "families", "family_of", "get_family", "load_model"]
