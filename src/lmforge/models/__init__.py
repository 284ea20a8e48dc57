from lmforge.models.config import PRESETS, ModelConfig
from lmforge.models.transformer import KVCache, Transformer

__all__ = ["ModelConfig", "PRESETS", "Transformer", "KVCache"]
