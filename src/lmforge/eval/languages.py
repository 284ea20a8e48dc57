"""Each language of a multilingual run on its own: what its text costs the tokenizer and the model.

  bytes_per_token   UTF-8 bytes per ordinary token (BOS and EOS left out) over the language's
                    training and validation text: the tokenizer's fertility, lower where the
                    vocabulary covers the language poorly
  bits_per_byte     the model's cost of the language's validation text: summed negative
                    log2-likelihood / its bytes. Causal models score every token (rolling
                    windows, as the whole-split number); encoders by pseudo-log-likelihood
                    (each of `pll_tokens` tokens masked alone, eval/masked_lm.py), the mean per
                    token times the language's ordinary tokens
  train_share       the language's share of the training tokens; sampled_share the share of
                    training windows drawn from it (data.language_alpha)

The spread (largest minus smallest bits per byte) is the single number that says how evenly
the model serves its languages.
"""

from __future__ import annotations

import math

import numpy as np

from lmforge.data.language_mix import language_weights


def language_table(score, languages: dict, val_tokens: np.ndarray, alpha: float) -> dict:
    """score(stream, n_ordinary_tokens) -> summed NLL in nats of a language's validation stream,
    extrapolated to all its tokens where the scorer samples."""
    counts = languages["counts"]
    train_total = sum(c["train_tokens"] for c in counts.values())
    sampled = language_weights({lang: c["train_tokens"] for lang, c in counts.items()}, alpha) \
        if train_total else {}
    rows = {}
    for lang in sorted(counts):
        c = counts[lang]
        docs = c["train_docs"] + c["val_docs"]
        ordinary = c["train_tokens"] + c["val_tokens"] - 2 * docs
        row = {"bytes_per_token": round((c["train_bytes"] + c["val_bytes"]) / max(ordinary, 1), 4),
               "train_share": round(c["train_tokens"] / max(train_total, 1), 4),
               "sampled_share": round(sampled.get(lang, 0.0), 4),
               "val_tokens": c["val_tokens"], "val_bytes": c["val_bytes"]}
        if c["val_docs"]:
            nll = score(languages["val"].stream(val_tokens, lang), c["val_tokens"] - 2 * c["val_docs"])
            row["bits_per_byte"] = round(nll / math.log(2) / c["val_bytes"], 4)
        rows[lang] = row
    scored = [r["bits_per_byte"] for r in rows.values() if "bits_per_byte" in r]
    return {"language_alpha": alpha, "by_language": rows,
            "bits_per_byte_spread": round(max(scored) - min(scored), 4) if scored else None}


LANGUAGE_HEADER = ["language", "bytes per token", "bits per byte", "share of training tokens",
                   "share of training windows", "validation bytes"]


def language_rows(table: dict) -> list[list]:
    """The table's rows for the model card and report.html, one per language."""
    return [[lang, row["bytes_per_token"], row.get("bits_per_byte", "no validation text"),
             f"{row['train_share']:.1%}", f"{row['sampled_share']:.1%}", row["val_bytes"]]
            for lang, row in table["by_language"].items()]


def language_summary(table: dict) -> str:
    return (f"Training windows sampled languages with p ∝ n^{table['language_alpha']:g} (n: a language's "
            f"training tokens). Spread of bits per byte across languages (largest minus smallest): "
            f"{table['bits_per_byte_spread']}.")
