"""GGUF export: every tensor read back with the `gguf` package; the tokenizer metadata llama.cpp
needs; and (slow, when llama-cpp-python is installed) llama.cpp itself generating what lmforge does."""

import json

import numpy as np
import pytest
import torch

from conftest import lmforge
from lmforge.errors import UserError
from lmforge.export.gguf import _tokenizer_parts, export_gguf, permute_for_llama_cpp
from lmforge.infer.tiny import make_tiny_run, sample_corpus
from lmforge.models.bert import BertConfig
from lmforge.models.io import find_weights, read_model_config, read_weights
from lmforge.models.llama import LlamaConfig

gguf = pytest.importorskip("gguf")
SMALL = dict(n_layer=2, d_model=64, n_head=4, n_kv_head=2, max_seq_len=64)


def _read(path):
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}

    def field(name):
        f = reader.fields[name]
        value = f.parts[f.data[0]]
        return bytes(value).decode() if f.types[0] == gguf.GGUFValueType.STRING else value.tolist()[0]
    return reader, tensors, field


def _values(t) -> np.ndarray:
    data = gguf.quants.dequantize(t.data, t.tensor_type)
    return np.asarray(data, dtype=np.float32).reshape([int(n) for n in reversed(t.shape)])


@pytest.mark.parametrize("qk_norm", [False, True])
def test_every_tensor_reads_back_under_llama_cpp_names(tmp_path, qk_norm):
    run = make_tiny_run(tmp_path / "run", LlamaConfig(preset="llama-mini", qk_norm=qk_norm, **SMALL))
    out = export_gguf(run, tmp_path / "gguf", dtype="f32")
    reader, tensors, field = _read(out / "model.gguf")
    cfg = read_model_config(find_weights(run))
    w = read_weights(find_weights(run), cfg)
    arch = "qwen3" if qk_norm else "llama"
    assert field("general.architecture") == arch
    assert field(f"{arch}.attention.head_count_kv") == 2 and field(f"{arch}.block_count") == 2
    expected = {"token_embd.weight": w["model.embed_tokens.weight"], "output.weight": w["lm_head.weight"],
                "output_norm.weight": w["model.norm.weight"]}
    for i in range(2):
        p = f"model.layers.{i}."
        q, k = w[p + "self_attn.q_proj.weight"], w[p + "self_attn.k_proj.weight"]
        if not qk_norm:     # llama.cpp's llama pairs neighbouring dimensions; qwen3 rotates halves like HF
            q, k = permute_for_llama_cpp(q, 4), permute_for_llama_cpp(k, 2)
        expected |= {f"blk.{i}.attn_q.weight": q, f"blk.{i}.attn_k.weight": k,
                     f"blk.{i}.attn_v.weight": w[p + "self_attn.v_proj.weight"],
                     f"blk.{i}.attn_output.weight": w[p + "self_attn.o_proj.weight"],
                     f"blk.{i}.ffn_gate.weight": w[p + "mlp.gate_proj.weight"],
                     f"blk.{i}.ffn_up.weight": w[p + "mlp.up_proj.weight"],
                     f"blk.{i}.ffn_down.weight": w[p + "mlp.down_proj.weight"],
                     f"blk.{i}.attn_norm.weight": w[p + "input_layernorm.weight"],
                     f"blk.{i}.ffn_norm.weight": w[p + "post_attention_layernorm.weight"]}
        if qk_norm:
            expected |= {f"blk.{i}.attn_q_norm.weight": w[p + "self_attn.q_norm.weight"],
                         f"blk.{i}.attn_k_norm.weight": w[p + "self_attn.k_norm.weight"]}
    assert sorted(tensors) == sorted(expected)
    for name, t in expected.items():
        np.testing.assert_array_equal(_values(tensors[name]), t.numpy(), err_msg=name)
    assert (out / "Modelfile").read_text().count("PARAMETER stop") == 2


def test_permutation_is_a_reordering_of_whole_rows():
    w = torch.arange(8 * 3, dtype=torch.float32).reshape(8, 3)
    p = permute_for_llama_cpp(w, heads=2)
    assert sorted(p[:, 0].tolist()) == sorted(w[:, 0].tolist())
    # head 0's rows 0..3 (halves [0,1] and [2,3]) become pairs: 0, 2, 1, 3
    assert p[:4, 0].tolist() == [w[0, 0], w[2, 0], w[1, 0], w[3, 0]]


def test_quantized_weights_stay_close(tmp_path):
    run = make_tiny_run(tmp_path / "run", LlamaConfig(preset="llama-mini", **SMALL))
    w = read_weights(find_weights(run), read_model_config(find_weights(run)))["model.embed_tokens.weight"].numpy()
    for dtype, tolerance in (("f16", 1e-3), ("q8_0", 2e-2)):
        _, tensors, field = _read(export_gguf(run, tmp_path / dtype, dtype=dtype) / "model.gguf")
        got = _values(tensors["token_embd.weight"])
        assert tensors["token_embd.weight"].tensor_type.name == dtype.upper()
        assert np.abs(got - w).max() <= tolerance * np.abs(w).max()


def test_lmforge_tokenizers_name_the_matching_llama_cpp_pre_tokenizer(tmp_path):
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer
    docs = tmp_path / "documents.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in sample_corpus()))
    expected = {(True, "gpt4"): "qwen2", (False, "gpt4"): "llama-bpe", (False, "bytelevel"): "gpt-2"}
    for (digits, pre), name in expected.items():
        tok = train_tokenizer(TokenizerConfig(kind="bpe", vocab_size=400, split_digits=digits, pretokenizer=pre),
                              docs, tmp_path / f"tok-{digits}-{pre}")
        tokens, types, merges, found = _tokenizer_parts(tok)
        assert found == name
        assert len(tokens) == tok.get_vocab_size() and merges and types[tok.token_to_id("<|bos|>")] == 3
    wordpiece = train_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=400), docs, tmp_path / "wp")
    with pytest.raises(UserError, match="byte-level BPE"):
        _tokenizer_parts(wordpiece)


def test_layouts_llama_cpp_cannot_run_are_refused(tmp_path):
    relu2 = make_tiny_run(tmp_path / "relu2", LlamaConfig(preset="tiny"))
    out = lmforge("export", str(relu2), "--format", "gguf", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "model.mlp = 'relu2'" in out.stderr and not (tmp_path / "x").exists()
    bert = make_tiny_run(tmp_path / "bert", BertConfig(preset="bert-tiny"))
    out = lmforge("export", str(bert), "--format", "gguf", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "arch is 'bert'" in out.stderr


def no_repacking(monkeypatch, llama_cpp) -> None:
    """llama.cpp's weight repacking for AMX CPUs crashes on q8_0 matrices (llama.cpp #20824, open);
    its generic CPU kernels compute the same model."""
    default = llama_cpp.llama_cpp.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = False
        return p
    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", params)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, ppl_tolerance", [("f32", 0.01), ("q8_0", 0.03)])
def test_llama_cpp_generates_and_scores_as_lmforge_does(tmp_path, monkeypatch, dtype, ppl_tolerance):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it builds llama.cpp)")
    no_repacking(monkeypatch, llama_cpp)
    from lmforge.infer.engine import Engine
    from lmforge.models.io import load_model
    run = make_tiny_run(tmp_path / "run", LlamaConfig(preset="llama-mini", n_layer=2, d_model=128, n_head=4,
                                                      max_seq_len=128))
    out = export_gguf(run, tmp_path / "gguf", dtype=dtype)
    llm = llama_cpp.Llama(model_path=str(out / "model.gguf"), n_ctx=128, logits_all=True, verbose=False,
                          n_threads=2)
    engine = Engine.from_run(run)
    try:
        text = sample_corpus()[1][:300]
        ours = engine.encode(text, add_special_tokens=False)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ours     # same pre-tokenizer
        prompt = engine.encode("The list type")
        if dtype == "f32":
            greedy = engine.generate(prompt, max_tokens=32, temperature=0.0, ignore_eos=True).token_ids
            theirs = []
            for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
                theirs.append(token)
                if len(theirs) == 32:
                    break
            assert theirs == greedy
        ids = ours[:100]
        llm.reset()
        llm.eval(ids)
        scores = torch.log_softmax(torch.tensor(np.array(llm.scores[:len(ids) - 1])), dim=-1)
        theirs_nll = -scores[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
        with torch.no_grad():
            logits = load_model(run)(torch.tensor([ids]))[0, :-1]
        ours_nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]))
        assert abs(float(theirs_nll.exp()) / float(ours_nll.exp()) - 1) < ppl_tolerance
    finally:
        engine.close()
