"""`bert`: the bidirectional encoder, trained by masked-language modelling."""

from __future__ import annotations

from lmforge.models.bert import hf
from lmforge.models.bert.config import BertConfig
from lmforge.models.bert.model import BertEncoder
from lmforge.models.registry import Family, roles_by_name


def _role(name: str, p) -> str:
    if name.startswith("bert.embeddings.") and name.endswith("_embeddings.weight"):
        return "embedding"
    if name == "cls.predictions.decoder.weight":
        return "head"
    return "matrix" if p.dim() == 2 else "vector"


def _layers(model: BertEncoder) -> list:
    return list(model.bert.encoder.layer)


def _describe(cfg: BertConfig) -> str:
    return (f"bidirectional encoder (arch `bert`, BERT's architecture): {cfg.n_layer} layers, d_model "
            f"{cfg.d_model}, {cfg.n_head} heads, learned positions up to {cfg.max_seq_len}, "
            f"masked-LM head tied to the embedding")


FAMILY = Family(
    arch="bert", config=BertConfig, build=BertEncoder, objectives=("masked_lm", "classify"),
    generative=False, recurrent=False,
    param_roles=lambda model: roles_by_name(model, _role),
    fsdp_units=_layers, blocks=_layers,
    features=lambda model, ids, mask: model.pool(model.encode(ids, mask), mask, "mean"),
    decoder=None, describe=_describe, to_hf=hf.to_hf, from_hf={"bert": hf.from_hf})

__all__ = ["FAMILY", "BertConfig", "BertEncoder"]
