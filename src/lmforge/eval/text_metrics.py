"""Reference-based text metrics: BLEU and chrF from sacrebleu, ROUGE from rouge-score.

The scores are the libraries' own, never re-implemented, so they match papers
that report them; the sacrebleu signature string records every setting that
changes a BLEU/chrF number (tokenizer, smoothing, reference count, version).
"""

from __future__ import annotations

import re

import numpy as np
from rouge_score import rouge_scorer

from lmforge.eval.stats import bootstrap_ci, bootstrap_mean_ci

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Per-example reference lists -> sacrebleu's reference streams (None where one has fewer)."""
    width = max(len(r) for r in references)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]


def _sacrebleu_result(metric, hypotheses: list[str], references: list[list[str]],
                      n_bootstrap: int, seed: int) -> dict:
    streams = _reference_streams(references)
    out = {"value": float(metric.corpus_score(hypotheses, streams).score),
           "signature": str(metric.get_signature())}
    if n_bootstrap > 1:
        # Resample sentences and rescore from sacrebleu's own per-sentence statistics, as its
        # paired bootstrap does; its built-in CI fails under numpy 2 on mixed float types.
        stats = np.asarray(metric._extract_corpus_statistics(hypotheses, streams), dtype=np.float64)
        out["ci95"] = list(bootstrap_ci(len(hypotheses), lambda idx: float(
            metric._compute_score_from_stats(stats[idx].sum(axis=0)).score),
            resamples=n_bootstrap, seed=seed))
    return out


def bleu(hypotheses: list[str], references: list[list[str]], *, tokenize: str | None = None,
         n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Corpus BLEU (0-100). `tokenize` None = sacrebleu's default (13a)."""
    from sacrebleu.metrics import BLEU
    return _sacrebleu_result(BLEU(tokenize=tokenize), hypotheses, references, n_bootstrap, seed)


def chrf(hypotheses: list[str], references: list[list[str]], *, word_order: int = 0,
         n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Corpus chrF (0-100); word_order=2 gives chrF++."""
    from sacrebleu.metrics import CHRF
    return _sacrebleu_result(CHRF(word_order=word_order), hypotheses, references, n_bootstrap, seed)


class UnicodeTokenizer:
    """Lower-cased runs of Unicode word characters, so Cyrillic, Greek or CJK text is kept.

    rouge-score's default tokenizer keeps only [a-z0-9] and silently scores non-Latin
    text as empty. Stemming (Porter, English) applies to tokens longer than 3
    characters, as in rouge-score's default."""

    def __init__(self, use_stemmer: bool = False):
        from nltk.stem import porter
        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = re.findall(r"\w+", text.lower())
        if self._stemmer is None:
            return tokens
        return [self._stemmer.stem(t) if len(t) > 3 else t for t in tokens]


def rouge(hypotheses: list[str], references: list[list[str]], *, types=ROUGE_TYPES,
          use_stemmer: bool = True, tokenizer: str = "default", n_bootstrap: int = 1000,
          seed: int = 0) -> dict[str, dict]:
    """Mean per-example ROUGE F1 (0-100); with several references, the best one per example.

    tokenizer: "default" (rouge-score's, Latin letters and digits) or "unicode"."""
    if tokenizer not in ("default", "unicode"):
        raise ValueError(f"rouge tokenizer: got {tokenizer!r}, allowed: default, unicode")
    custom = UnicodeTokenizer(use_stemmer) if tokenizer == "unicode" else None
    scorer = rouge_scorer.RougeScorer(list(types), use_stemmer=use_stemmer, tokenizer=custom)
    per_example = {t: [] for t in types}
    for hyp, refs in zip(hypotheses, references):
        scores = scorer.score_multi(refs, hyp)
        for t in types:
            per_example[t].append(100.0 * scores[t].fmeasure)
    out = {}
    for t in types:
        values = per_example[t]
        entry = {"value": float(np.mean(values)) if values else float("nan")}
        if n_bootstrap > 1:
            entry["ci95"] = list(bootstrap_mean_ci(values, resamples=n_bootstrap, seed=seed))
        out[t] = entry
    return out
