"""`llama`: the decoder-only transformer (HF Llama names and RoPE layout), with its fast decode kernel."""

from __future__ import annotations

from lmforge.models.classifier import last_token
from lmforge.models.llama import hf
from lmforge.models.llama.config import LlamaConfig
from lmforge.models.llama.model import KVCache, Transformer
from lmforge.models.registry import Family, roles_by_name


def _role(name: str, p) -> str:
    if name == "lm_head.weight":
        return "head"
    if name.startswith("model.embed_ngrams."):
        return "table"
    if name.startswith("model.embed_"):
        return "embedding"
    if p.dim() == 2 and name.startswith("model.layers."):
        return "matrix"
    return "vector"


def _decoder(model: Transformer):
    from lmforge.models.llama.decode import FusedDecoder
    return FusedDecoder(model)


def _layers(model: Transformer) -> list:
    return list(model.model.layers)


def _features(model: Transformer, input_ids, attention_mask):
    return last_token(model(input_ids, return_hidden=True), attention_mask)


def _describe(cfg: LlamaConfig) -> str:
    return (f"decoder-only transformer (arch `llama`): {cfg.n_layer} layers, d_model {cfg.d_model}, "
            f"{cfg.n_head} heads ({cfg.kv_heads} key/value), {cfg.mlp} MLP, {cfg.norm}, "
            f"{cfg.positions} positions, context {cfg.max_seq_len}")


FAMILY = Family(
    arch="llama", config=LlamaConfig, build=Transformer, objectives=("causal_lm", "sft", "dpo", "classify"),
    generative=True, recurrent=False,
    param_roles=lambda model: roles_by_name(model, _role),
    fsdp_units=_layers, blocks=_layers,
    features=_features, decoder=_decoder, describe=_describe,
    to_hf=hf.to_hf, from_hf={kind: hf.from_hf for kind in ("llama", "mistral", "qwen3", "gpt2")})

__all__ = ["FAMILY", "LlamaConfig", "Transformer", "KVCache"]
