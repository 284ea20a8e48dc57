"""A faster encoder for lmforge's byte-level BPE tokenizers, through tiktoken (optional).

A byte-level BPE whose pre-tokenizer is one split regex, trained by `train.py`, gives token ids
in merge order, which is exactly tiktoken's "rank" model: the same vocabulary and regex in
tiktoken give the same ids several times faster. `fast_encoder` builds that encoder only when
the tokenizer has this shape, and `encode_shards` still checks a sample of documents against
Hugging Face `tokenizers` and falls back to it on any difference.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
from tokenizers import Tokenizer


def _byte_of_char() -> dict[str, int]:
    """Byte-level BPE's printable stand-in character for each byte (GPT-2's table), inverted."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return {c: b for b, c in chars.items()}


def _split_regex(spec: dict) -> str | None:
    """The split regex of a Sequence[Split(regex, isolated), ByteLevel(no regex)] pre-tokenizer."""
    if not spec or spec.get("type") != "Sequence" or len(spec.get("pretokenizers", [])) != 2:
        return None
    split, byte_level = spec["pretokenizers"]
    if (split.get("type") != "Split" or split.get("behavior") != "Isolated" or split.get("invert")
            or "Regex" not in split.get("pattern", {})):
        return None
    if byte_level.get("type") != "ByteLevel" or byte_level.get("use_regex") or byte_level.get("add_prefix_space"):
        return None
    return split["pattern"]["Regex"]


def fast_encoder(tok: Tokenizer) -> Callable[[list[str]], list[np.ndarray]] | None:
    """A batch encoder giving the ids of `tok.encode_batch(..., add_special_tokens=False)` as
    uint32 arrays, or None."""
    try:
        import tiktoken
    except ImportError:
        return None
    spec = json.loads(tok.to_str())
    model = spec["model"]
    pattern = _split_regex(spec.get("pre_tokenizer"))
    if (model.get("type") != "BPE" or spec.get("normalizer") or pattern is None or model.get("dropout")
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix")
            or model.get("byte_fallback")):
        return None
    specials = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    table = _byte_of_char()
    try:
        ranks = {bytes(table[ch] for ch in token): i for token, i in model["vocab"].items()
                 if token not in specials}
        enc = tiktoken.Encoding("lmforge", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    except (KeyError, ValueError):
        return None

    def encode_one(text: str) -> np.ndarray:
        try:
            return enc.encode_to_numpy(text, allowed_special="all")   # no Python list of ids to build
        except UnicodeEncodeError:     # lone surrogates: `encode` repairs them, `encode_to_numpy` does not
            return np.array(enc.encode(text, allowed_special="all"), dtype=np.uint32)

    def encode(texts: list[str]) -> list[np.ndarray]:
        return list(map(encode_one, texts))

    return encode
