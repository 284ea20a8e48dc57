"""The `bert` family's model: BERT's encoder and masked-LM head, under Hugging Face's names.

Post-LayerNorm blocks, learned absolute positions, optional token-type embeddings, an
embedding LayerNorm, GELU, and the MLM head (dense + GELU + LayerNorm, then a decoder
tied to the input embedding with its own bias) — the layout of `BertForMaskedLM`, so
the weights map onto it name for name.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.models.bert.config import BertConfig


class SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.query = nn.Linear(cfg.d_model, cfg.d_model)
        self.key = nn.Linear(cfg.d_model, cfg.d_model)
        self.value = nn.Linear(cfg.d_model, cfg.d_model)


class Output(nn.Module):
    """dense -> dropout -> LayerNorm(residual + .): BERT's sublayer output."""

    def __init__(self, d_in: int, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg.d_model)
        self.LayerNorm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(h)))


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.self = SelfAttention(cfg)
        self.output = Output(cfg.d_model, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        heads = lambda lin: lin(x).view(B, T, self.cfg.n_head, self.cfg.head_dim).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(self.self.query), heads(self.self.key), heads(self.self.value),
                                           attn_mask=mask, dropout_p=self.cfg.dropout if self.training else 0.0)
        return self.output(y.transpose(1, 2).reshape(B, T, -1), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.ff_dim)


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = Output(cfg.ff_dim, cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.position_embeddings = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        if cfg.type_vocab_size:
            self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.LayerNorm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)


class Encoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layer))


class Bert(nn.Module):
    """HF's `bert.` prefix: embeddings and encoder."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)


class Transform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.LayerNorm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)


class Predictions(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.transform = Transform(cfg)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))


class MLMHead(nn.Module):
    """HF's `cls.` prefix."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.predictions = Predictions(cfg)


class BertEncoder(nn.Module):
    """forward(input_ids, attention_mask=None, token_type_ids=None) -> MLM logits (B, T, vocab).

    attention_mask (B, T): 1 for real tokens, 0 for padding (padding is never attended to)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("BertConfig.vocab_size must be set before building the model")
        self.cfg = cfg
        self.bert = Bert(cfg)
        self.cls = MLMHead(cfg)
        if cfg.tie_embeddings:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, self.cfg.init_std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.cls.predictions.bias)

    def num_lookup_params(self) -> int:
        e = self.bert.embeddings
        tables = [e.word_embeddings, e.position_embeddings]
        if self.cfg.type_vocab_size:
            tables.append(e.token_type_embeddings)
        return sum(t.weight.numel() for t in tables)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The last layer's hidden states (B, T, d_model)."""
        B, T = input_ids.shape
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds the model's context of {self.cfg.max_seq_len}")
        e = self.bert.embeddings
        x = e.word_embeddings(input_ids) + e.position_embeddings(torch.arange(T, device=input_ids.device))
        if self.cfg.type_vocab_size:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + e.token_type_embeddings(types)
        x = e.dropout(e.LayerNorm(x))
        mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        for layer in self.bert.encoder.layer:
            x = layer(x, mask)
        return x

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        p = self.cls.predictions
        h = p.transform.LayerNorm(F.gelu(p.transform.dense(hidden)))
        return p.decoder(h) + p.bias

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, predict: torch.Tensor | None = None) -> torch.Tensor:
        """Masked-LM logits (B, T, vocab); with `predict` (B, T) bool, only at those positions,
        (n, vocab) in row-major order: training scores the masked ~15% of tokens, so the head,
        the largest matrix of a small encoder, runs on those alone."""
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        return self.mlm_logits(hidden) if predict is None else self._logits_at(hidden, predict)

    @torch.compiler.disable     # the number of masked tokens changes every batch: not a shape to compile for
    def _logits_at(self, hidden: torch.Tensor, predict: torch.Tensor) -> torch.Tensor:
        return self.mlm_logits(hidden[predict])

    @staticmethod
    def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None = None, how: str = "mean") -> torch.Tensor:
        """One vector per sequence for classification heads and embeddings: the mean over real
        tokens ("mean") or the first token's state ("first", BERT's [CLS] position)."""
        if how == "first":
            return hidden[:, 0]
        if attention_mask is None:
            return hidden.mean(dim=1)
        w = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
