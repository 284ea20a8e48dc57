"""Compare tokenizers on the same texts: bytes per token per language (higher = more compression).

Used by `lmforge tokenizer eval`. A tokenizer that gives a language few bytes per token makes
that language's text longer, so it costs more compute and context, and is modelled worse.
"""

from __future__ import annotations

from pathlib import Path

from lmforge.tokenizer.load import load_tokenizer, special_ids


def compare_tokenizers(paths: list[Path], texts_by_language: dict[str, list[str]]) -> dict:
    """{tokenizer path: {"vocab_size", "languages": {lang: {bytes, tokens, bytes_per_token,
    unk_rate, roundtrip}}}}; roundtrip is the share of texts that decode back exactly."""
    report = {}
    for path in paths:
        tok = load_tokenizer(Path(path))
        unk = special_ids(tok)["unk"]
        langs = {}
        for lang, texts in texts_by_language.items():
            encoded = tok.encode_batch(texts, add_special_tokens=False)
            n_bytes = sum(len(t.encode("utf-8")) for t in texts)
            n_tokens = sum(len(e.ids) for e in encoded)
            unks = sum(e.ids.count(unk) for e in encoded) if unk is not None else 0
            exact = sum(tok.decode(e.ids, skip_special_tokens=False) == t for t, e in zip(texts, encoded))
            langs[lang] = {"bytes": n_bytes, "tokens": n_tokens,
                           "bytes_per_token": round(n_bytes / max(1, n_tokens), 3),
                           "unk_rate": round(unks / max(1, n_tokens), 4),
                           "roundtrip": round(exact / max(1, len(texts)), 3)}
        report[str(path)] = {"vocab_size": tok.get_vocab_size(), "languages": langs}
    return report
