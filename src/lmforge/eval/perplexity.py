"""Corpus perplexity: token, word and byte perplexity and bits per byte.

Log-likelihoods are summed over the whole corpus before dividing (not averaged per
document), with every token scored exactly once by rolling windows:

    token_perplexity = exp(-sum ll / sum tokens)   # depends on the tokenizer
    word_perplexity  = exp(-sum ll / sum words)    # words = pieces of re.split(r"\\s+", text)
    byte_perplexity  = exp(-sum ll / sum bytes)    # UTF-8 bytes
    bits_per_byte    = -sum ll / sum bytes / ln 2

Word and byte counts do not depend on the tokenizer, so those three compare
models with different vocabularies (lm-evaluation-harness's definitions).
"""

from __future__ import annotations

import math
import re

from lmforge.eval.lm import EvalLM


def count_words(text: str) -> int:
    return len(re.split(r"\s+", text))


def evaluate_perplexity(lm: EvalLM, texts: list[str]) -> dict:
    lls = lm.loglikelihood_rolling(texts)
    ll = sum(lls)
    tokens = sum(len(lm.rolling_pair(t)[1]) for t in texts)
    words = sum(count_words(t) for t in texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    metrics = {
        "token_perplexity": {"value": math.exp(-ll / tokens) if tokens else float("nan")},
        "word_perplexity": {"value": math.exp(-ll / words)},
        "byte_perplexity": {"value": math.exp(-ll / nbytes)},
        "bits_per_byte": {"value": -ll / nbytes / math.log(2)},
    }
    return {"metrics": metrics,
            "counts": {"documents": len(texts), "tokens": tokens, "words": words, "bytes": nbytes,
                       "loglikelihood": ll}}
