"""How much of each language a multilingual model sees: XLM's temperature sampling.

Language l, with n_l tokens (or bytes) of training text, is drawn with probability
p_l = n_l^alpha / sum_k n_k^alpha. alpha = 1 keeps the corpus's own proportions; alpha = 0
gives every language the same share; XLM used 0.5 and XLM-R 0.3, which lift the small
languages at some cost to the large ones.

The token shards record where each language's documents lie (tokens/languages.json: runs
of consecutive documents of one language, per split), so a training window can be drawn
from a chosen language, and the evaluation can score each language on its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lmforge.atomic import write_json
from lmforge.errors import UserError

UNDETERMINED = "und"        # ISO 639-2's code for a document whose language is not known
LANGUAGES_FILE = "languages.json"


def language_weights(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    """p_l ∝ n_l^alpha over the languages with some data, summing to 1."""
    present = {lang: float(n) for lang, n in sizes.items() if n > 0}
    if not present:
        raise ValueError("no language has any data")
    powered = {lang: n ** alpha for lang, n in present.items()}
    total = sum(powered.values())
    return {lang: v / total for lang, v in powered.items()}


def repeat_rates(sizes: dict[str, float], alpha: float) -> dict[str, float]:
    """How many times each language's documents are used so that the text's mix follows
    language_weights while its total size stays the same (rate p_l / q_l, q_l its own share)."""
    weights = language_weights(sizes, alpha)
    total = sum(sizes[lang] for lang in weights)
    return {lang: weights[lang] / (sizes[lang] / total) for lang in weights}


def resample(items, language_of, rates: dict[str, float], seed: int):
    """Yield each item round(rate) times on average (the fraction drawn at random, seeded):
    a stream whose language mix follows `rates`."""
    rng = np.random.default_rng(seed)
    for item in items:
        rate = rates.get(language_of(item), 1.0)
        copies = int(rate) + (rng.random() < rate - int(rate))
        for _ in range(copies):
            yield item


class LanguageSegments:
    """Runs of consecutive documents of one language in a split's token file."""

    def __init__(self, runs: list[tuple[str, int, int]]):
        self.runs = runs          # (language, first token, end token)

    def languages(self) -> list[str]:
        return sorted({lang for lang, _, _ in self.runs})

    def tokens(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for lang, start, end in self.runs:
            out[lang] = out.get(lang, 0) + end - start
        return out

    def stream(self, tokens: np.ndarray, language: str) -> np.ndarray:
        """The split's tokens of one language, its runs joined in order."""
        parts = [tokens[start:end] for lang, start, end in self.runs if lang == language]
        return np.concatenate(parts) if parts else tokens[:0]


class LanguageRuns:
    """Builds LanguageSegments while documents are written in order: (language, n_tokens) each."""

    def __init__(self):
        self.runs: list[list] = []
        self.position = 0

    def add(self, language: str, n_tokens: int) -> None:
        if self.runs and self.runs[-1][0] == language:
            self.runs[-1][2] += n_tokens
        else:
            self.runs.append([language, self.position, self.position + n_tokens])
        self.position += n_tokens


def write_languages(path: Path, counts: dict[str, dict[str, int]], train: LanguageRuns, val: LanguageRuns) -> None:
    write_json(path, {"counts": counts, "train": train.runs, "val": val.runs})


def read_languages(tokens_dir: Path) -> dict | None:
    """tokens/languages.json as {"counts": {lang: {...}}, "train": LanguageSegments, "val": ...},
    or None for shards without languages."""
    path = Path(tokens_dir) / LANGUAGES_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    return {"counts": raw["counts"], "train": LanguageSegments([tuple(r) for r in raw["train"]]),
            "val": LanguageSegments([tuple(r) for r in raw["val"]])}


class LanguageMix:
    """Window starts for TokenBatches: each row picks a language by language_weights over the
    training tokens, then a position uniformly among that language's tokens."""

    def __init__(self, segments: LanguageSegments, alpha: float, n_tokens: int, seq_len: int):
        self.alpha = alpha
        last = n_tokens - seq_len - 1        # the last position a full window can start at
        self.runs: dict[str, list[tuple[int, int]]] = {}
        for lang, start, end in segments.runs:
            if start < last:
                self.runs.setdefault(lang, []).append((start, min(end, last)))
        if not self.runs:
            raise UserError(f"the training split's {n_tokens} tokens are too few for windows of {seq_len}")
        sizes = {lang: sum(e - s for s, e in runs) for lang, runs in self.runs.items()}
        self.weights = language_weights(sizes, alpha)
        self.order = sorted(self.weights)
        self._p = torch.tensor([self.weights[lang] for lang in self.order], dtype=torch.float64)
        self._cum = {lang: np.cumsum([e - s for s, e in runs]) for lang, runs in self.runs.items()}

    def starts(self, n: int, gen: torch.Generator) -> list[int]:
        langs = torch.multinomial(self._p, n, replacement=True, generator=gen).tolist()
        offsets = torch.rand(n, generator=gen, dtype=torch.float64).tolist()
        out = []
        for li, u in zip(langs, offsets):
            lang = self.order[li]
            cum = self._cum[lang]
            k = min(int(u * cum[-1]), int(cum[-1]) - 1)      # the k-th token of this language
            run = int(np.searchsorted(cum, k, side="right"))
            out.append(self.runs[lang][run][0] + k - (int(cum[run - 1]) if run else 0))
        return out
