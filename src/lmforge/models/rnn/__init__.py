"""`lstm`, `gru`, `rnn`: recurrent language models, the guide's baseline against the transformer."""

from __future__ import annotations

from lmforge.models.classifier import last_token
from lmforge.models.registry import Family, roles_by_name
from lmforge.models.rnn.config import CELLS, RNNConfig
from lmforge.models.rnn.model import RecurrentLM

_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "tanh RNN (Elman)"}


def _role(name: str, p) -> str:
    if name == "embed.weight":
        return "embedding"
    if name == "head.weight":
        return "head"
    return "matrix" if p.dim() == 2 else "vector"


def _decoder(model: RecurrentLM):
    from lmforge.models.rnn.decode import RecurrentDecoder
    return RecurrentDecoder(model)


def _describe(cfg: RNNConfig) -> str:
    return (f"recurrent language model (arch `{cfg.arch}`): {cfg.n_layer} {_NAMES[cfg.arch]} layers of "
            f"{cfg.d_model}, {'tied' if cfg.tie_embeddings else 'untied'} embedding and head, "
            f"truncated back-propagation over windows of {cfg.max_seq_len}")


FAMILIES = tuple(
    Family(arch=cell, config=RNNConfig, build=RecurrentLM, objectives=("causal_lm", "classify"),
           generative=True, recurrent=True,
           param_roles=lambda model: roles_by_name(model, _role),
           fsdp_units=lambda model: [],      # one fused kernel spans all layers: shard the root only
           blocks=lambda model: [model.rnn],  # ... and is one block to fine-tuning
           features=lambda model, ids, mask: last_token(model.hidden(ids)[0], mask),
           decoder=_decoder, describe=_describe)
    for cell in CELLS)

__all__ = ["FAMILIES", "RNNConfig", "RecurrentLM"]
