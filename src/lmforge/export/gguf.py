"""GGUF export for llama.cpp and Ollama, written with the `gguf` package (llama.cpp's own).

    lmforge export RUN --format gguf [--dtype f32|f16|q8_0]

    out/model.gguf    the weights under llama.cpp's tensor names, the hyperparameters, the whole
                      byte-level BPE tokenizer (tokens, merges, token types, the pre-tokenizer
                      that splits text as ours does), bos/eos/end-of-turn ids and the chat template
    out/Modelfile     for `ollama create NAME -f Modelfile`: the template and the stop tokens

A Llama-layout model becomes llama.cpp's `llama` architecture, whose rotary embedding pairs
neighbouring dimensions: the query and key rows are permuted from Hugging Face's rotate-half
order, as llama.cpp's own converter does. With QK-norm it becomes `qwen3`, whose rotary
embedding is rotate-half: no permutation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.models.io import read_model_config, read_weights
from lmforge.export import exportable_checkpoint, refuse_existing
from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer, special_ids
from lmforge.tokenizer.specials import CHAT_TEMPLATE

DTYPES = ("f32", "f16", "q8_0")

_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# llama.cpp's pre-tokenizer names for the split patterns lmforge's BPE tokenizers use
_PRE_TOKENIZERS = {
    # GPT-4's split with one digit per token (lmforge's default) is Qwen2's
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    # GPT-4's split with up to three digits is Llama 3's
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    _GPT2_SPLIT: "gpt-2",
}

_OLLAMA_TEMPLATE = ('{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}'
                    '{{- if not .Messages }}{{ .Prompt }}{{ else }}<|assistant|>\n{{ end }}')


def permute_for_llama_cpp(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of a query/key projection from rotate-half order to llama.cpp's adjacent pairs."""
    out = weight.shape[0]
    return weight.reshape(heads, 2, out // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _check_layout(cfg) -> str:
    """The llama.cpp architecture for `cfg`, or a one-line refusal."""
    if cfg.arch != "llama":
        raise UserError(f"GGUF export is for decoders (arch 'llama'); this run's arch is '{cfg.arch}'")
    for key, value in dict(norm="rmsnorm", positions="rope", mlp="swiglu", bias=False).items():
        if getattr(cfg, key) != value:
            raise UserError(f"model.{key} = {getattr(cfg, key)!r}: llama.cpp's llama and qwen3 architectures "
                            f"need {key} = {value!r} (train with model.preset = \"llama-mini\")")
    if cfg.ngram_orders or cfg.logit_softcap:
        raise UserError("model.ngram_orders / model.logit_softcap: llama.cpp has no equivalent; train without them")
    return "qwen3" if cfg.qk_norm else "llama"


def _tokenizer_parts(tok) -> tuple[list[str], list[int], list[str], str]:
    """(tokens by id, token types, merges, llama.cpp pre-tokenizer) of a byte-level BPE tokenizer."""
    spec = json.loads(tok.to_str())
    if spec["model"]["type"] != "BPE":
        raise UserError(f"GGUF export needs a byte-level BPE tokenizer (tokenizer.kind = \"bpe\"); "
                        f"this one is {spec['model']['type']}")
    pre = spec.get("pre_tokenizer") or {}
    splits = pre.get("pretokenizers", [pre])
    patterns = [p["pattern"].get("Regex") for p in splits if p.get("type") == "Split"]
    if not patterns and any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in splits):
        patterns = [_GPT2_SPLIT]    # ByteLevel's own regex is GPT-2's
    name = _PRE_TOKENIZERS.get(patterns[0] if patterns else "")
    if name is None:
        raise UserError("the tokenizer's split pattern matches no llama.cpp pre-tokenizer "
                        "(tokenizer.pretokenizer = \"gpt4\" with split_digits = true matches qwen2)")
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [""] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    specials = set(tok.get_added_tokens_decoder())
    types = [3 if i in specials else 1 for i in range(len(tokens))]   # 3 = control, 1 = normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    return tokens, types, merges, name


def _tensor(writer, name: str, t: torch.Tensor, dtype: str) -> None:
    import gguf
    data = t.detach().float().numpy()
    if data.ndim == 1 or dtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif dtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, q), raw_dtype=q)


def export_gguf(run: str | Path, out: str | Path, force: bool = False, dtype: str = "f16") -> Path:
    import gguf
    run, out = Path(run), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r}: allowed {', '.join(DTYPES)}")
    ckpt = exportable_checkpoint(run)
    cfg = read_model_config(ckpt)
    arch = _check_layout(cfg)
    if dtype == "q8_0" and any(n % 32 for n in (cfg.d_model, cfg.ff_dim)):
        raise UserError(f"q8_0 needs rows that are multiples of 32 (d_model {cfg.d_model}, d_ff {cfg.ff_dim})")
    refuse_existing(out, force)
    tok = load_tokenizer(find_tokenizer_dir(run, ckpt))
    tokens, types, merges, pre = _tokenizer_parts(tok)
    w = read_weights(ckpt, cfg)
    ids = special_ids(tok)
    with atomic.atomic_dir(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp / "model.gguf"), arch)
        writer.add_name(run.name)
        writer.add_context_length(cfg.max_seq_len)
        writer.add_embedding_length(cfg.d_model)
        writer.add_block_count(cfg.n_layer)
        writer.add_feed_forward_length(cfg.ff_dim)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.kv_heads)
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_layer_norm_rms_eps(cfg.norm_eps)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                              "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_bos_token_id(ids["bos"])
        writer.add_eos_token_id(ids["eos"])
        writer.add_pad_token_id(ids["pad"])
        if ids["end"] is not None:
            writer.add_eot_token_id(ids["end"])
        writer.add_add_bos_token(True)      # documents were trained as <|bos|> text <|eos|>
        writer.add_chat_template(CHAT_TEMPLATE)
        _tensor(writer, "token_embd.weight", w["model.embed_tokens.weight"], dtype)
        for i in range(cfg.n_layer):
            p = f"model.layers.{i}."
            q, k = w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"]
            if arch == "llama":
                q, k = permute_for_llama_cpp(q, cfg.n_head), permute_for_llama_cpp(k, cfg.kv_heads)
            parts = {"attn_norm": w[p + "input_layernorm.weight"], "attn_q": q, "attn_k": k,
                     "attn_v": w[p + "self_attn.v_proj.weight"], "attn_output": w[p + "self_attn.o_proj.weight"],
                     "ffn_norm": w[p + "post_attention_layernorm.weight"], "ffn_gate": w[p + "mlp.gate_proj.weight"],
                     "ffn_up": w[p + "mlp.up_proj.weight"], "ffn_down": w[p + "mlp.down_proj.weight"]}
            if arch == "qwen3":
                parts.update(attn_q_norm=w[p + "self_attn.q_norm.weight"], attn_k_norm=w[p + "self_attn.k_norm.weight"])
            for name, t in parts.items():
                _tensor(writer, f"blk.{i}.{name}.weight", t, dtype)
        _tensor(writer, "output_norm.weight", w["model.norm.weight"], dtype)
        if not cfg.tie_embeddings:
            _tensor(writer, "output.weight", w["lm_head.weight"], dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        stops = "".join(f'PARAMETER stop "{t}"\n' for t in ("<|end|>", "<|eos|>"))
        (tmp / "Modelfile").write_text(f'FROM ./model.gguf\nTEMPLATE """{_OLLAMA_TEMPLATE}"""\n{stops}')
    return out
