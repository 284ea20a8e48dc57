"""Tokenizer training, Hugging Face interop, the chat template, and kind-specific behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.errors import UserError
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.load import load_tokenizer, special_ids
from lmforge.tokenizer.specials import SPECIAL_TOKENS, render_chat
from lmforge.tokenizer.train import train_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHAKESPEARE = SHARED / "tinyshakespeare.txt"

TEXTS = [
    "def add(a, b):\n    return a + b  # sum of 12345 and 678\n",
    "Unicode: café, naïve, 日本語のテキスト, Привет мир! 🙂\n\n\ttabbed line   with  spaces ",
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Numbers 3.14159 and 2,718 and 1e-10; emails like <EMAIL> stay placeholders.",
] * 5


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "documents.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return path


@pytest.fixture(scope="module")
def bpe_dir(documents, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bpe")
    train_tokenizer(TokenizerConfig(vocab_size=400, min_frequency=1), documents, out)
    return out


def test_bpe_round_trips_and_has_fixed_special_ids(bpe_dir):
    tok = load_tokenizer(bpe_dir)
    for text in set(TEXTS) | {"  leading spaces\r\nand CRLF\x00nul"}:
        assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text
    ids = special_ids(tok)
    assert [ids[k] for k in ("bos", "eos", "pad", "mask", "system", "user", "assistant", "end")] == list(range(8))
    assert ids["unk"] is None
    digits = tok.encode("12345").tokens
    assert len(digits) == 5


def test_hf_loading_and_chat_template(bpe_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    fast = PreTrainedTokenizerFast(tokenizer_file=str(bpe_dir / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(bpe_dir)
    text = TEXTS[1]
    assert fast(text)["input_ids"] == auto(text)["input_ids"] == load_tokenizer(bpe_dir).encode(text).ids
    assert (auto.bos_token, auto.eos_token, auto.pad_token, auto.mask_token) == \
        ("<|bos|>", "<|eos|>", "<|pad|>", "<|mask|>")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    rendered = auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chat(messages, add_generation_prompt=True) == \
        "<|bos|><|system|>\nBe brief.<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\n"
    ids = auto.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert ids[0] == 0 and auto.convert_ids_to_tokens(ids[-2]) == "<|assistant|>"
    config = json.loads((bpe_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["model_max_length"] == 2048
    assert (bpe_dir / "chat_template.jinja").read_text() == config["chat_template"]


def test_char_tokenizer_is_exact(documents, tmp_path):
    tok = train_tokenizer(TokenizerConfig(kind="char"), documents, tmp_path)
    chars = set("".join(TEXTS))
    assert tok.get_vocab_size() == len(chars) + len(SPECIAL_TOKENS) + 1     # + <|unk|>
    for text in TEXTS:
        ids = tok.encode(text).ids
        assert len(ids) == len(text) and tok.decode(ids) == text


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"shared data not found at {SHAKESPEARE}")
def test_char_tokenizer_on_tiny_shakespeare(tmp_path):
    text = SHAKESPEARE.read_text()[:200_000]
    docs = tmp_path / "documents.jsonl"
    docs.write_text(json.dumps({"text": text}) + "\n")
    tok = train_tokenizer(TokenizerConfig(kind="char"), docs, tmp_path / "tok")
    assert tok.get_vocab_size() == len(set(text)) + 9
    assert tok.decode(tok.encode(text[:5000]).ids) == text[:5000]


@pytest.mark.parametrize("kind", ["wordpiece", "unigram"])
def test_wordpiece_and_unigram(kind, documents, tmp_path):
    from transformers import AutoTokenizer
    tok = train_tokenizer(TokenizerConfig(kind=kind, vocab_size=300, min_frequency=1), documents, tmp_path)
    assert special_ids(tok)["unk"] is not None
    text = "The quick brown fox jumps over the lazy dog."
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    auto = AutoTokenizer.from_pretrained(tmp_path)
    ids = auto(text)["input_ids"]
    if kind == "wordpiece":      # BERT's [CLS] ... [SEP] are <|bos|> ... <|eos|>
        assert ids[0] == 0 and ids[-1] == 1 and auto.cls_token == "<|bos|>"


def test_existing_tokenizer_is_copied(bpe_dir, documents, tmp_path):
    tok = train_tokenizer(TokenizerConfig(path=str(bpe_dir / "tokenizer.json")), documents, tmp_path)
    assert tok.get_vocab_size() == load_tokenizer(bpe_dir).get_vocab_size()
    assert (tmp_path / "tokenizer_config.json").is_file()


def test_missing_inputs_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="documents not found"):
        train_tokenizer(TokenizerConfig(), tmp_path / "nope.jsonl", tmp_path / "out")
    with pytest.raises(UserError, match="no tokenizer.json"):
        load_tokenizer(tmp_path)
