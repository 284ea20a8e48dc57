"""The `llama` family's model: a decoder-only (causal) transformer.

Parameter names and the RoPE layout (rotate-half) are those of Hugging Face's
Llama, so a SwiGLU/RMSNorm/RoPE model saves straight into `LlamaForCausalLM`
with no renaming or permutation. The same module also covers nanoGPT's GPT-2
architecture (learned positions, LayerNorm, GELU, tied head) and the modern
small-model recipe (QK-norm, ReLU², zero-initialised projections, soft-capped
logits), chosen by `LlamaConfig` fields rather than by separate classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.models.llama.config import LlamaConfig
from lmforge.models.llama.ngram import NGramEmbedding, sequence_windows


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm whose weight takes the input's dtype: under bf16 autocast a float32 weight
    against bf16 activations sends torch to its unfused fallback (measured ~13% slower per call)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


def make_norm(cfg: LlamaConfig, dim: int) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim, eps=cfg.norm_eps)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotate-half RoPE (HF Llama layout), built once for max_seq_len."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._build(max_seq_len)

    def _build(self, n: int) -> None:
        t = torch.arange(n, dtype=torch.float32, device=self.inv_freq.device)
        freqs = torch.outer(t, self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # (a graph being exported or compiled has no values to check: it indexes the built table)
        if not torch.compiler.is_compiling() and int(positions.max()) >= self.cos.shape[0]:
            self._build(int(positions.max()) + 1)
        return self.cos[positions], self.sin[positions]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, H, T, D); cos/sin: (B, T, D) or (T, D). The tables take x's dtype, as Hugging Face's
    # Llama does: under bf16 autocast, float32 tables would promote every product to float32
    # and back (measured 7.2 against 4.3 ms per call, forward and backward, at 16 x 6 x 256 x 64).
    if cos.dim() == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer_idx: int):
        super().__init__()
        self.cfg = cfg
        self.layer_idx = layer_idx
        hd, nh, nkv = cfg.head_dim, cfg.n_head, cfg.kv_heads
        self.q_proj = nn.Linear(cfg.d_model, nh * hd, bias=cfg.bias)
        self.k_proj = nn.Linear(cfg.d_model, nkv * hd, bias=cfg.bias)
        self.v_proj = nn.Linear(cfg.d_model, nkv * hd, bias=cfg.bias)
        self.o_proj = nn.Linear(nh * hd, cfg.d_model, bias=cfg.bias)
        if cfg.qk_norm:
            # per-head RMSNorm on queries and keys (Qwen3/OLMo-2 naming)
            self.q_norm = RMSNorm(hd, eps=cfg.norm_eps)
            self.k_norm = RMSNorm(hd, eps=cfg.norm_eps)
        self.dropout = cfg.dropout

    def forward(self, x, rope, mask, cache):
        B, T, _ = x.shape
        hd = self.cfg.head_dim
        q = self.q_proj(x).view(B, T, -1, hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, hd).transpose(1, 2)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        is_causal = False
        if mask is None and T > 1:
            S = k.shape[2]
            if S == T:
                is_causal = True
            else:  # a chunk appended to a cache: query i sits at position S - T + i
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.cfg.kv_heads != self.cfg.n_head)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, -1))


GELU_APPROXIMATION = {"gelu": "none", "gelu_tanh": "tanh"}   # gelu_tanh: GPT-2's "gelu_new"


class ReluSquared(torch.autograd.Function):
    """relu(x)², with the backward written out (2·relu(x)·grad): autograd's pow backward makes
    several more passes over the activation (measured 29 against 15 ms per call, forward and
    backward, at 16 x 256 x 1536 in bf16). Training only; inference and export use the plain ops."""

    @staticmethod
    def forward(ctx, x):
        r = F.relu(x)
        ctx.save_for_backward(r)
        return r * r

    @staticmethod
    def backward(ctx, grad):
        (r,) = ctx.saved_tensors
        return (grad * r).mul_(2)


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.kind = cfg.mlp
        d, ff = cfg.d_model, cfg.ff_dim
        if cfg.mlp == "swiglu":
            self.gate_proj = nn.Linear(d, ff, bias=cfg.bias)
        self.up_proj = nn.Linear(d, ff, bias=cfg.bias)
        self.down_proj = nn.Linear(ff, d, bias=cfg.bias)

    def forward(self, x):
        if self.kind == "swiglu":
            h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        elif self.kind == "relu2":
            up = self.up_proj(x)
            h = ReluSquared.apply(up) if up.requires_grad else F.relu(up).square()
        else:
            h = F.gelu(self.up_proj(x), approximate=GELU_APPROXIMATION[self.kind])
        return self.down_proj(h)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = make_norm(cfg, cfg.d_model)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = make_norm(cfg, cfg.d_model)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask, cache):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), rope, mask, cache))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class Backbone(nn.Module):
    """Everything but the head: HF's `model.` prefix."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.ngram_orders:
            self.embed_ngrams = NGramEmbedding(cfg.vocab_size, cfg.d_model, cfg.ngram_orders,
                                               cfg.ngram_buckets, cfg.ngram_dim, cfg.ngram_dropout)
        if cfg.positions == "learned":
            self.embed_positions = nn.Embedding(cfg.max_seq_len, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = make_norm(cfg, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)


class Transformer(nn.Module):
    """Decoder-only transformer (HF `LlamaForCausalLM` names).

    forward(input_ids, position_ids=None, mask=None, cache=None) -> logits
      - position_ids: (B, T) absolute positions; default 0..T-1 (or continuing the cache)
      - mask: optional boolean/additive attention mask broadcastable to (B, H, T, S)
      - cache: an object with `update(layer_idx, k, v) -> (k_all, v_all)` and a `length`
        attribute (see `KVCache`); the engine may pass its own batched implementation.
    """

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        if cfg.vocab_size < 1:
            raise ValueError("LlamaConfig.vocab_size must be set before building the model")
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.rotary = (RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
                       if cfg.positions == "rope" else None)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() < 2:
                continue  # norm weights keep their ones, biases their zeros
            is_out = name.endswith(("o_proj.weight", "down_proj.weight"))
            if is_out and self.cfg.zero_init_out:
                nn.init.zeros_(p)
            elif is_out:
                # GPT-2's scaled init for residual projections
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layer))
            else:
                nn.init.normal_(p, 0.0, std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        if self.cfg.ngram_orders:
            self.model.embed_ngrams.reset_parameters(std)

    def num_lookup_params(self) -> int:
        """Parameters used by table lookups (embeddings), which cost no multiply-adds."""
        tables = [self.model.embed_tokens]
        if self.cfg.positions == "learned":
            tables.append(self.model.embed_positions)
        if self.cfg.ngram_orders:
            tables.append(self.model.embed_ngrams.table)
        return sum(t.weight.numel() for t in tables)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache=None, return_hidden: bool = False):
        B, T = input_ids.shape
        if position_ids is None:
            start = cache.length if cache is not None else 0
            position_ids = torch.arange(start, start + T, device=input_ids.device).unsqueeze(0)
        if (self.cfg.positions == "learned" and not torch.compiler.is_compiling()
                and int(position_ids.max()) >= self.cfg.max_seq_len):
            raise ValueError(f"sequence of {int(position_ids.max()) + 1} tokens exceeds the "
                             f"model's context of {self.cfg.max_seq_len}")
        x = self.model.embed_tokens(input_ids)
        if self.cfg.ngram_orders:
            if cache is not None:
                raise ValueError("a model with n-gram embeddings needs each token's predecessors; "
                                 "generate with lmforge.infer.Engine instead of a KVCache")
            ngrams = self.model.embed_ngrams
            x = x + ngrams(sequence_windows(input_ids, ngrams.width, ngrams.pad))
        if self.cfg.positions == "learned":
            x = x + self.model.embed_positions(position_ids)
        x = self.model.drop(x)
        rope = self.rotary(position_ids) if self.rotary is not None else None
        for block in self.model.layers:
            x = block(x, rope, mask, cache)
        x = self.model.norm(x)
        if cache is not None:
            cache.advance(T)
        if return_hidden:
            return x
        return self.logits(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.soft_cap(self.lm_head(hidden))

    def soft_cap(self, logits: torch.Tensor) -> torch.Tensor:
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits


class KVCache:
    """A contiguous per-layer key/value cache for one batch of equal-length sequences."""

    def __init__(self, cfg: LlamaConfig, batch_size: int, max_len: int, dtype=torch.float32, device=None):
        shape = (batch_size, cfg.kv_heads, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)]
        self.length = 0
        self.max_len = max_len

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor):
        T = k.shape[2]
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} > {self.max_len} tokens")
        self.k[layer_idx][:, :, self.length:end] = k
        self.v[layer_idx][:, :, self.length:end] = v
        return self.k[layer_idx][:, :, :end], self.v[layer_idx][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
