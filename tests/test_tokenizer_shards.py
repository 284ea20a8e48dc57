"""Token shards: layout, split, metadata; and the per-language tokenizer comparison."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import UserError
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.evaluate import compare_tokenizers
from lmforge.tokenizer.load import load_tokenizer
from lmforge.tokenizer.shards import encode_shards
from lmforge.tokenizer.train import train_tokenizer

UD = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ud_sentences"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    docs = root / "documents.jsonl"
    texts = [f"Document {i}: " + "some words about rivers and hills. " * (1 + i % 7) for i in range(60)]
    docs.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), docs, root / "tok")
    return root, docs, texts


def test_shards_layout_and_meta(setup):
    root, docs, texts = setup
    meta = encode_shards(root / "tok", docs, root / "t1", val_fraction=0.1, seed=3, workers=2)
    tok = load_tokenizer(root / "tok")
    train = np.memmap(root / "t1" / "train.bin", dtype=meta["dtype"], mode="r")
    val = np.memmap(root / "t1" / "val.bin", dtype=meta["dtype"], mode="r")
    assert meta["dtype"] == "uint16" and len(train) == meta["train_tokens"] and len(val) == meta["val_tokens"]
    assert meta["train_docs"] + meta["val_docs"] == 60 and meta["val_docs"] == 6
    assert (train == meta["bos_id"]).sum() == meta["train_docs"] == (train == meta["eos_id"]).sum()
    val_text = (root / "t1" / "val.txt").read_text()
    assert meta["val_bytes"] == len(val_text.encode()) - 2 * (meta["val_docs"] - 1)
    assert meta["train_bytes"] + meta["val_bytes"] == sum(len(t.encode()) for t in texts)
    first = val_text.split("\n\n")[0]
    assert list(val[1:int(np.argmax(val == meta["eos_id"]))]) == tok.encode(first).ids
    again = encode_shards(root / "tok", docs, root / "t2", val_fraction=0.1, seed=3)
    assert (root / "t2" / "val.txt").read_text() == val_text and again["train_tokens"] == meta["train_tokens"]
    other = encode_shards(root / "tok", docs, root / "t3", val_fraction=0.1, seed=4)
    assert (root / "t3" / "val.txt").read_text() != val_text and other["val_docs"] == 6


def test_lone_surrogates_become_replacement_characters(setup, tmp_path):
    # a documents.jsonl written by hand (no pipeline run) may spell half a UTF-16 pair
    root, _, _ = setup
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "broken \\ud800 pair"}\n{"text": "fine"}\n{"text": "also \\udfff here"}\n')
    meta = encode_shards(root / "tok", docs, tmp_path / "t", val_fraction=0.5, seed=0)
    assert meta["train_docs"] + meta["val_docs"] == 3
    val_text = (tmp_path / "t" / "val.txt").read_text(encoding="utf-8")
    assert "\ud800" not in val_text and "\udfff" not in val_text
    assert "\ufffd" in val_text   # two of the three documents are validation, so one broken one
    train_tokenizer(TokenizerConfig(vocab_size=300, min_frequency=1), docs, tmp_path / "tok")


@pytest.mark.parametrize("bad, why", [(b'{"text": "caf\xe9"}', "not a JSON object"),
                                      (b'{"text": 5}', "'text' is not a string")])
def test_bad_document_line_is_named(setup, tmp_path, bad, why):
    root, _, _ = setup
    docs = tmp_path / "docs.jsonl"
    # the bad line sits in the second batch of 512, so a worker process finds it
    docs.write_bytes(b'{"text": "fine"}\n' * 600 + bad + b'\n{"text": "also fine"}\n')
    with pytest.raises(UserError, match=f"line 601: {why}"):
        encode_shards(root / "tok", docs, tmp_path / "t", val_fraction=0.5, seed=0, workers=2)
    assert not (tmp_path / "t" / "train.bin").exists()


def test_at_least_one_validation_document(setup, tmp_path):
    root, _, _ = setup
    docs = tmp_path / "two.jsonl"
    docs.write_text('{"text": "a river"}\n{"text": "a hill"}\n')
    meta = encode_shards(root / "tok", docs, tmp_path / "t", val_fraction=0.01, seed=0)
    assert meta["val_docs"] == 1 and meta["train_docs"] == 1
    docs.write_text('{"text": "alone"}\n')
    with pytest.raises(UserError, match="at least 2 documents"):
        encode_shards(root / "tok", docs, tmp_path / "t", val_fraction=0.01, seed=0)


@pytest.mark.skipif(not UD.is_dir(), reason=f"shared data not found at {UD}")
def test_compare_tokenizers_per_language(setup):
    root, _, _ = setup
    texts = {p.name[:2]: p.read_text().splitlines()[:50] for p in sorted(UD.glob("*-test.sentences.txt"))}
    report = compare_tokenizers([root / "tok"], texts)[str(root / "tok")]
    assert set(report["languages"]) == {"en", "de", "fr", "ru", "ja", "zh"}
    en, zh = report["languages"]["en"], report["languages"]["zh"]
    assert en["bytes_per_token"] > zh["bytes_per_token"] >= 1.0     # trained on English; byte fallback elsewhere
    assert all(v["roundtrip"] == 1.0 for v in report["languages"].values())


def test_fast_encoder_matches_tokenizers(setup):
    pytest.importorskip("tiktoken", reason="tiktoken not installed: shards use tokenizers only")
    from lmforge.tokenizer.fast import fast_encoder
    root, _, texts = setup
    tok = load_tokenizer(root / "tok")
    sample = texts + ["Tabs\tand  spaces\n\n\r\n 12345 <|end|> naïve 日本語 🙂", "  ", "x" * 5000]
    fast = fast_encoder(tok)
    expected = [e.ids for e in tok.encode_batch(sample, add_special_tokens=False)]
    assert [ids.tolist() for ids in fast(sample)] == expected
    char = train_tokenizer(TokenizerConfig(kind="char"), root / "documents.jsonl", root / "char")
    assert fast_encoder(char) is None
