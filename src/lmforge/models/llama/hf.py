"""The `llama` family and Hugging Face: which standard architecture holds a config, and back.

The decoder keeps HF Llama's parameter names and RoPE layout, so a Llama, Mistral or Qwen3
checkpoint maps name for name; GPT-2 maps onto the same family with its own layout (LayerNorm,
learned positions, tanh-GELU, biases, tied head), its Conv1D weights transposed and its fused
query/key/value projection split.
"""

from __future__ import annotations

import torch

from lmforge.errors import UserError
from lmforge.models.llama.config import LlamaConfig

_LLAMA_LAYOUT = dict(norm="rmsnorm", positions="rope", mlp="swiglu", bias=False)


def _refuse(reason: str) -> None:
    raise UserError(f"{reason}; no standard Hugging Face architecture expresses it exactly "
                    f"(train with model.preset = \"llama-mini\" for an exportable model)")


def to_hf(cfg: LlamaConfig, weights: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json dict, state dict) of the standard architecture that computes what `cfg` does."""
    if cfg.ngram_orders:
        _refuse("model.ngram_orders: hashed n-gram embeddings")
    if cfg.logit_softcap:
        _refuse("model.logit_softcap")
    if cfg.positions == "learned" or cfg.norm == "layernorm":
        return _to_gpt2(cfg, weights)
    for key, value in _LLAMA_LAYOUT.items():
        if getattr(cfg, key) != value:
            _refuse(f"model.{key} = {getattr(cfg, key)!r} with RoPE and RMSNorm")
    common = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
                  num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                  num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
                  max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
                  rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                  attention_bias=False, attention_dropout=0.0, torch_dtype="float32")
    if cfg.qk_norm:   # Qwen3: Llama with a per-head RMSNorm on queries and keys, before RoPE
        config = dict(common, architectures=["Qwen3ForCausalLM"], model_type="qwen3", use_sliding_window=False)
    else:
        config = dict(common, architectures=["LlamaForCausalLM"], model_type="llama", mlp_bias=False)
    return config, dict(weights)


def from_hf(config: dict, weights: dict[str, torch.Tensor]) -> tuple[LlamaConfig, dict[str, torch.Tensor]]:
    """A Llama, Mistral, Qwen3 or GPT-2 checkpoint as the llama family's config and weights."""
    kind = config.get("model_type")
    if kind == "gpt2":
        return _from_gpt2(config, weights)
    if config.get("hidden_act", "silu") != "silu":
        raise UserError(f"config.json: hidden_act {config.get('hidden_act')!r}; lmforge's decoder uses silu")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise UserError("config.json: biased attention or MLP projections are not supported for this architecture")
    if config.get("rope_scaling"):
        raise UserError(f"config.json: rope_scaling {config['rope_scaling']!r} is not supported")
    if kind == "mistral" and config.get("sliding_window") not in (None, 0) and \
            config["sliding_window"] < config.get("max_position_embeddings", 0):
        raise UserError("config.json: Mistral sliding-window attention is not supported")
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    if head_dim * heads != config["hidden_size"]:
        raise UserError(f"config.json: head_dim {head_dim} x {heads} heads != hidden_size {config['hidden_size']}")
    cfg = LlamaConfig(
        vocab_size=config["vocab_size"], n_layer=config["num_hidden_layers"], n_head=heads,
        n_kv_head=config.get("num_key_value_heads") or heads, d_model=config["hidden_size"],
        d_ff=config["intermediate_size"], max_seq_len=config.get("max_position_embeddings", 2048),
        norm_eps=config.get("rms_norm_eps", 1e-6), rope_theta=float(config.get("rope_theta", 10000.0)),
        qk_norm=kind == "qwen3", tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        zero_init_out=False, **_LLAMA_LAYOUT)
    return cfg, dict(weights)


# ---------------------------------------------------------------------------- GPT-2

def _to_gpt2(cfg: LlamaConfig, weights: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    wanted = dict(positions="learned", norm="layernorm", mlp="gelu_tanh", bias=True, tie_embeddings=True)
    for key, value in wanted.items():
        if getattr(cfg, key) != value:
            _refuse(f"model.{key} = {getattr(cfg, key)!r} with learned positions or LayerNorm "
                    f"(GPT-2 needs {key} = {value!r})")
    if cfg.kv_heads != cfg.n_head or cfg.ff_dim != 4 * cfg.d_model:
        _refuse("grouped-query attention or a non-4x MLP with the GPT-2 layout")
    config = dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=cfg.vocab_size,
                  n_positions=cfg.max_seq_len, n_embd=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                  n_inner=None, activation_function="gelu_new", layer_norm_epsilon=cfg.norm_eps,
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                  scale_attn_weights=True, torch_dtype="float32")
    out = {"transformer.wte.weight": weights["model.embed_tokens.weight"],
           "transformer.wpe.weight": weights["model.embed_positions.weight"],
           "transformer.ln_f.weight": weights["model.norm.weight"], "transformer.ln_f.bias": weights["model.norm.bias"]}
    for i in range(cfg.n_layer):
        ours, theirs = f"model.layers.{i}.", f"transformer.h.{i}."
        for a, b in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[f"{theirs}{b}.weight"] = weights[f"{ours}{a}.weight"]
            out[f"{theirs}{b}.bias"] = weights[f"{ours}{a}.bias"]
        qkv = [f"{ours}self_attn.{p}_proj" for p in "qkv"]
        out[f"{theirs}attn.c_attn.weight"] = torch.cat([weights[f"{n}.weight"] for n in qkv]).t().contiguous()
        out[f"{theirs}attn.c_attn.bias"] = torch.cat([weights[f"{n}.bias"] for n in qkv])
        for a, b in (("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"), ("mlp.down_proj", "mlp.c_proj")):
            out[f"{theirs}{b}.weight"] = weights[f"{ours}{a}.weight"].t().contiguous()   # Conv1D: (in, out)
            out[f"{theirs}{b}.bias"] = weights[f"{ours}{a}.bias"]
    return config, out


def _from_gpt2(config: dict, weights: dict[str, torch.Tensor]) -> tuple[LlamaConfig, dict]:
    act = config.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        raise UserError(f"config.json: GPT-2 activation_function {act!r} is not supported (gelu_new is)")
    d, n_layer = config["n_embd"], config["n_layer"]
    if config.get("n_inner") not in (None, 4 * d):
        raise UserError(f"config.json: GPT-2 n_inner {config['n_inner']} (only 4 x n_embd is supported)")
    cfg = LlamaConfig(vocab_size=config["vocab_size"], n_layer=n_layer, n_head=config["n_head"], d_model=d,
                      max_seq_len=config.get("n_positions", 1024), norm="layernorm", positions="learned",
                      mlp="gelu_tanh", bias=True, tie_embeddings=True, zero_init_out=False,
                      norm_eps=config.get("layer_norm_epsilon", 1e-5))
    w = {k.removeprefix("transformer."): v for k, v in weights.items()}
    out = {"model.embed_tokens.weight": w["wte.weight"], "model.embed_positions.weight": w["wpe.weight"],
           "model.norm.weight": w["ln_f.weight"], "model.norm.bias": w["ln_f.bias"]}
    for i in range(n_layer):
        ours, theirs = f"model.layers.{i}.", f"h.{i}."
        for a, b in (("input_layernorm", "ln_1"), ("post_attention_layernorm", "ln_2")):
            out[f"{ours}{a}.weight"] = w[f"{theirs}{b}.weight"]
            out[f"{ours}{a}.bias"] = w[f"{theirs}{b}.bias"]
        q, k, v = w[f"{theirs}attn.c_attn.weight"].t().chunk(3)
        qb, kb, vb = w[f"{theirs}attn.c_attn.bias"].chunk(3)
        for p, (weight, bias) in zip("qkv", ((q, qb), (k, kb), (v, vb))):
            out[f"{ours}self_attn.{p}_proj.weight"] = weight.contiguous()
            out[f"{ours}self_attn.{p}_proj.bias"] = bias
        for a, b in (("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"), ("mlp.down_proj", "mlp.c_proj")):
            out[f"{ours}{a}.weight"] = w[f"{theirs}{b}.weight"].t().contiguous()
            out[f"{ours}{a}.bias"] = w[f"{theirs}{b}.bias"]
    out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return cfg, out
