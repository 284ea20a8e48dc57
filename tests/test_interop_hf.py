"""Hugging Face interop, proven against transformers itself: exported folders load with the Auto
classes (no remote code) and compute lmforge's logits; HF checkpoints import and compute theirs."""

import json
import shutil

import pytest
import torch
import transformers

from conftest import lmforge
from lmforge.errors import UserError
from lmforge.export.hf import export_hf, import_hf
from lmforge.infer.engine import Engine
from lmforge.infer.template import ChatTemplate
from lmforge.infer.tiny import make_tiny_run, sample_corpus
from lmforge.models.bert import BertConfig
from lmforge.models.io import find_weights, load_model, read_weights, read_model_config
from lmforge.models.llama import LlamaConfig
from lmforge.models.rnn import RNNConfig
from lmforge.tokenizer.load import load_tokenizer

SMALL = dict(n_layer=2, d_model=64, n_head=4, max_seq_len=64)
EXPORTS = {
    "llama (GQA)": (LlamaConfig(preset="llama-mini", n_kv_head=2, **SMALL), "LlamaForCausalLM"),
    "llama (tied head)": (LlamaConfig(preset="llama-mini", tie_embeddings=True, **SMALL), "LlamaForCausalLM"),
    "qwen3 (QK-norm)": (LlamaConfig(preset="llama-mini", qk_norm=True, **SMALL), "Qwen3ForCausalLM"),
    "gpt2": (LlamaConfig(norm="layernorm", positions="learned", mlp="gelu_tanh", bias=True, tie_embeddings=True,
                         **SMALL), "GPT2LMHeadModel"),
}


def _ids(vocab: int, n: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("layout", EXPORTS)
def test_exported_decoders_load_in_transformers_with_the_same_logits(tmp_path, layout):
    cfg, architecture = EXPORTS[layout]
    run = make_tiny_run(tmp_path / "run", cfg)
    out = export_hf(run, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["architectures"] == [architecture]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == architecture
    ours = load_model(run)
    ids = _ids(ours.cfg.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=0, atol=1e-5)
    stops = hf.generation_config.eos_token_id
    tok = load_tokenizer(run / "tokenizer")
    assert sorted(stops) == sorted([tok.token_to_id("<|eos|>"), tok.token_to_id("<|end|>")])


def test_exported_tokenizer_encodes_and_renders_chat_as_lmforge_does(tmp_path):
    run = make_tiny_run(tmp_path / "run", EXPORTS["llama (GQA)"][0])
    out = export_hf(run, tmp_path / "hf")
    theirs = transformers.AutoTokenizer.from_pretrained(out)
    ours = load_tokenizer(run / "tokenizer")
    for text in sample_corpus():
        assert theirs.encode(text, add_special_tokens=False) == ours.encode(text, add_special_tokens=False).ids
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a dict?"},
                {"role": "assistant", "content": "A mapping."}, {"role": "user", "content": "And a list?"}]
    assert theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        ChatTemplate.from_dir(run / "tokenizer").render(messages)
    assert theirs.model_max_length == 64
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "pipeline_tag: text-generation" in card


def test_exported_encoder_loads_as_bert_for_masked_lm(tmp_path):
    run = make_tiny_run(tmp_path / "run", BertConfig(preset="bert-tiny", type_vocab_size=0, max_seq_len=64))
    out = export_hf(run, tmp_path / "hf")
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "BertForMaskedLM"
    ours = load_model(run)
    ids = _ids(ours.cfg.vocab_size)
    mask = torch.ones_like(ids)
    mask[1, 18:] = 0                                                  # padding in the second row
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids, attention_mask=mask).logits,
                                   ours(ids, attention_mask=mask), rtol=0, atol=1e-5)


def test_what_no_standard_architecture_holds_is_refused_by_name(tmp_path):
    relu2 = make_tiny_run(tmp_path / "relu2", LlamaConfig(preset="tiny"))
    out = lmforge("export", str(relu2), "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "model.mlp = 'relu2'" in out.stderr and "llama-mini" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    lstm = make_tiny_run(tmp_path / "lstm", RNNConfig(arch="lstm", n_layer=1, d_model=32))
    out = lmforge("export", str(lstm), "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "arch 'lstm' has no Hugging Face architecture" in out.stderr
    ok = make_tiny_run(tmp_path / "ok")
    assert lmforge("export", str(ok), "--out", str(tmp_path / "y")).returncode == 0
    again = lmforge("export", str(ok), "--out", str(tmp_path / "y"))
    assert again.returncode == 2 and "--force" in again.stderr
    assert lmforge("export", str(ok), "--out", str(tmp_path / "y"), "--force").returncode == 0


# ---------------------------------------------------------------------------- import

def _hf_folder(tmp_path, model, tokenizer_dir) -> str:
    folder = tmp_path / "hf-model"
    model.save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


def _random(kind: str, vocab: int):
    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=64)
    if kind == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(num_key_value_heads=2, **common))
    if kind == "mistral":
        return transformers.MistralForCausalLM(transformers.MistralConfig(num_key_value_heads=2, sliding_window=None,
                                                                          **common))
    if kind == "qwen3":
        return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(num_key_value_heads=2, head_dim=16, **common))
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4,
                                                                    n_positions=64))
    return transformers.BertForMaskedLM(transformers.BertConfig(**common))


@pytest.mark.parametrize("kind", ["llama", "mistral", "qwen3", "gpt2", "bert"])
def test_imported_checkpoints_compute_transformers_logits(tmp_path, kind):
    tiny = make_tiny_run(tmp_path / "tiny")
    vocab = load_tokenizer(tiny / "tokenizer").get_vocab_size()
    hf = _random(kind, vocab).eval()
    run = import_hf(_hf_folder(tmp_path, hf, tiny / "tokenizer"), tmp_path / "run")
    ours = load_model(run)
    ids = _ids(vocab)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, rtol=0, atol=1e-5)
    if kind == "bert":
        out = lmforge("fill-mask", str(run), "--text", "The [MASK] of a list")
        assert out.returncode == 0 and out.stdout.startswith("mask 1: "), out.stderr
        return
    engine = Engine.from_run(run)
    try:
        prompt = engine.encode("A list")
        ours_greedy = engine.generate(prompt, max_tokens=8, temperature=0.0, ignore_eos=True).token_ids
    finally:
        engine.close()
    theirs = hf.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None,
                         pad_token_id=0)[0, len(prompt):].tolist()
    assert ours_greedy == theirs


def test_round_trip_lmforge_to_hf_to_lmforge_keeps_every_weight(tmp_path):
    run = make_tiny_run(tmp_path / "run", EXPORTS["qwen3 (QK-norm)"][0])
    back = import_hf(export_hf(run, tmp_path / "hf"), tmp_path / "back")
    a, b = find_weights(run), find_weights(back)
    cfg = read_model_config(a)
    first, second = read_weights(a, cfg), read_weights(b, read_model_config(b))
    assert sorted(first) == sorted(second)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_import_refuses_what_it_cannot_read_in_one_line(tmp_path):
    tiny = make_tiny_run(tmp_path / "tiny")
    vocab = load_tokenizer(tiny / "tokenizer").get_vocab_size()
    folder = _hf_folder(tmp_path, _random("llama", vocab), tiny / "tokenizer")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    with pytest.raises(UserError, match="has shape"):
        import_hf(folder, tmp_path / "bad-shape")
    assert not (tmp_path / "bad-shape").exists()
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "t5", "architectures": ["T5Model"]}))
    out = lmforge("import", str(folder), "--out", str(tmp_path / "t5"))
    assert out.returncode == 2 and "T5Model" in out.stderr and "lmforge imports: bert, gpt2" in out.stderr
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    out = lmforge("import", str(folder), "--out", str(tmp_path / "pickled"))
    assert out.returncode == 2 and "never loads" in out.stderr and len(out.stderr.strip().splitlines()) == 1
