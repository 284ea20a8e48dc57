"""The `llama` family's config: a decoder-only transformer, and its named presets.

One dataclass covers Hugging Face's Llama layout (RMSNorm, RoPE, SwiGLU), nanoGPT's
GPT-2 architecture (LayerNorm, learned positions, GELU, tied head) and the modern
small-model recipe (QK-norm, ReLU², zero-initialised projections, soft-capped
logits), chosen by fields rather than by separate classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lmforge.models.config import ModelConfig


@dataclass
class LlamaConfig(ModelConfig):
    n_head: int = 4
    n_kv_head: int = 0               # 0 = same as n_head (no grouped-query attention)
    d_ff: int = 0                    # 0 = derived from the MLP type
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_eps: float = 1e-5
    positions: Literal["rope", "learned"] = "rope"
    rope_theta: float = 10000.0
    mlp: Literal["swiglu", "relu2", "gelu", "gelu_tanh"] = "swiglu"   # gelu_tanh = GPT-2's tanh approximation
    qk_norm: bool = False
    bias: bool = False
    logit_softcap: float = 0.0       # 0 = off; else logits = cap * tanh(logits / cap)
    zero_init_out: bool = True       # zero the attention/MLP output projections at init
    # hashed n-gram input embeddings (models/llama/ngram.py): e.g. [2, 3, 4]; empty = off
    ngram_orders: list[int] = field(default_factory=list)
    ngram_buckets: int = 65536       # table rows per order, at most
    ngram_dim: int = 32              # table width, projected to d_model
    ngram_dropout: float = 0.2       # training: each n-gram lookup is left out with this probability

    PRESETS: ClassVar[dict[str, dict]] = {}

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff:
            return self.d_ff
        if self.mlp == "swiglu":
            # 8/3 * d keeps SwiGLU's parameter count equal to a 4*d two-matrix MLP; round to 32
            return int(((8 * self.d_model // 3) + 31) // 32 * 32)
        return 4 * self.d_model

    def validate(self) -> None:
        super().validate()
        if self.n_head < 1:
            raise ValueError(f"n_head: got {self.n_head}, must be >= 1")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})")
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dim, got {self.head_dim}")
        if self.ngram_orders:
            if len(set(self.ngram_orders)) != len(self.ngram_orders) or not all(
                    isinstance(n, int) and 2 <= n <= 8 for n in self.ngram_orders):
                raise ValueError(f"ngram_orders: got {self.ngram_orders}, "
                                 "expected distinct integers from 2 to 8")
            for name in ("ngram_buckets", "ngram_dim"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name}: got {getattr(self, name)}, must be >= 1")
            if not 0.0 <= self.ngram_dropout < 1.0:
                raise ValueError(f"ngram_dropout: got {self.ngram_dropout}, allowed: 0 <= ngram_dropout < 1")


# Presets: the gpt2 family reproduces nanoGPT's architecture (the in-house baseline);
# the others are lmforge's modern recipe at increasing size.
_GPT2 = dict(norm="layernorm", positions="learned", mlp="gelu", tie_embeddings=True,
             zero_init_out=False, qk_norm=False)
_MODERN = dict(norm="rmsnorm", positions="rope", mlp="relu2", tie_embeddings=False,
               zero_init_out=True, qk_norm=True)
LlamaConfig.PRESETS = {
    "gpt2-char": dict(_GPT2, n_layer=4, n_head=4, d_model=128, max_seq_len=64),
    "gpt2": dict(_GPT2, n_layer=6, n_head=6, d_model=384, max_seq_len=256),
    "gpt2-small": dict(_GPT2, n_layer=12, n_head=12, d_model=768, max_seq_len=1024),
    "tiny": dict(_MODERN, n_layer=2, n_head=2, d_model=64, max_seq_len=128),
    "mini": dict(_MODERN, n_layer=4, n_head=4, d_model=256, max_seq_len=256),
    "small": dict(_MODERN, n_layer=6, n_head=6, d_model=384, max_seq_len=256),
    "base": dict(_MODERN, n_layer=12, n_head=12, d_model=768, max_seq_len=1024),
    "large": dict(_MODERN, n_layer=24, n_head=16, d_model=1024, max_seq_len=2048),
    # Llama-exportable variant: SwiGLU + untied head, as HF LlamaForCausalLM expects.
    "llama-mini": dict(norm="rmsnorm", positions="rope", mlp="swiglu", tie_embeddings=False,
                       qk_norm=False, n_layer=4, n_head=4, d_model=256, max_seq_len=256),
}
