"""The `bert` family and Hugging Face's `BertForMaskedLM`: the same names, two details apart.

HF keeps the MLM decoder's bias twice (`cls.predictions.bias` and the tied
`cls.predictions.decoder.bias`) and has at least one token-type row; lmforge stores the bias
once and can have none (a zero row is exact: it adds nothing).
"""

from __future__ import annotations

import torch

from lmforge.errors import UserError
from lmforge.models.bert.config import BertConfig

_DECODER_BIAS = "cls.predictions.decoder.bias"
_TYPES = "bert.embeddings.token_type_embeddings.weight"


def to_hf(cfg: BertConfig, weights: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    config = dict(architectures=["BertForMaskedLM"], model_type="bert", vocab_size=cfg.vocab_size,
                  hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                  intermediate_size=cfg.ff_dim, hidden_act="gelu", hidden_dropout_prob=cfg.dropout,
                  attention_probs_dropout_prob=cfg.dropout, max_position_embeddings=cfg.max_seq_len,
                  type_vocab_size=max(cfg.type_vocab_size, 1), layer_norm_eps=cfg.norm_eps,
                  position_embedding_type="absolute", tie_word_embeddings=cfg.tie_embeddings,
                  torch_dtype="float32")
    out = dict(weights)
    out[_DECODER_BIAS] = out["cls.predictions.bias"]
    if not cfg.type_vocab_size:
        out[_TYPES] = torch.zeros(1, cfg.d_model)
    return config, out


def from_hf(config: dict, weights: dict[str, torch.Tensor]) -> tuple[BertConfig, dict[str, torch.Tensor]]:
    if config.get("hidden_act", "gelu") != "gelu":
        raise UserError(f"config.json: hidden_act {config.get('hidden_act')!r}; lmforge's BERT uses gelu")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"config.json: position_embedding_type {config['position_embedding_type']!r} "
                        f"is not supported (absolute is)")
    if "cls.predictions.transform.dense.weight" not in weights:
        raise UserError("the checkpoint has no masked-LM head (cls.predictions.*): lmforge imports "
                        "BertForMaskedLM (or BertForPreTraining) checkpoints")
    cfg = BertConfig(vocab_size=config["vocab_size"], n_layer=config["num_hidden_layers"],
                     n_head=config["num_attention_heads"], d_model=config["hidden_size"],
                     d_ff=config["intermediate_size"], max_seq_len=config.get("max_position_embeddings", 512),
                     type_vocab_size=config.get("type_vocab_size", 2), norm_eps=config.get("layer_norm_eps", 1e-12),
                     dropout=config.get("hidden_dropout_prob", 0.1),
                     tie_embeddings=bool(config.get("tie_word_embeddings", True)))
    keep = ("bert.embeddings.", "bert.encoder.", "cls.predictions.")
    out = {k: v for k, v in weights.items() if k.startswith(keep) and k != _DECODER_BIAS
           and not k.endswith("position_ids")}
    out.setdefault("cls.predictions.decoder.weight", out["bert.embeddings.word_embeddings.weight"])
    return cfg, out
