"""Heuristic quality filters with their published thresholds.

Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", App. A),
C4's line and page rules (Raffel et al. 2020) and FineWeb's extra rules (Penedo et al. 2024).
Every rule has a name; `skip_rules` switches single rules off and the removal reason names
the rule that fired, so the removal log says exactly why a document went.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from lmforge.data.config import QualityConfig
from lmforge.data.steps import Record, Step

_STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}   # Gopher's list
_TERMINAL = ('.', '!', '?', '"', "'", '”', '’', '。', '！', '？')
_BULLETS = ("•", "-", "*", "●", "·", "‣", "▪", "–")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
           "use cookies")
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
_ALPHA = re.compile(r"[^\W\d_]")
_P = np.uint64(1_000_003)     # multiplier of the rolling n-gram hash (wraps mod 2**64)


def _dup_fraction(parts: list[str]) -> tuple[float, float]:
    """(share of parts that repeat an earlier one, share of characters in those repeats)."""
    if not parts:
        return 0.0, 0.0
    seen: set[str] = set()
    dup = dup_chars = 0
    for p in parts:
        if p in seen:
            dup += 1
            dup_chars += len(p)
        else:
            seen.add(p)
    total = sum(len(p) for p in parts) or 1
    return dup / len(parts), dup_chars / total


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    h = np.zeros(len(ids) - n + 1, dtype=np.uint64)
    for k in range(n):
        h = h * _P + ids[k:len(ids) - n + 1 + k]
    return h


class Quality(Step):
    name = "quality"

    def __init__(self, cfg: QualityConfig):
        self.cfg = cfg
        self.on = lambda rule: rule not in cfg.skip_rules

    def apply(self, doc, rec: Record):
        cfg = self.cfg
        if cfg.c4 and self.on("c4_lines"):
            doc.text = self._c4_lines(doc.text, rec)
        checks = []
        if cfg.gopher:
            checks.append(self._gopher)
        if cfg.gopher_repetition:
            checks.append(self._repetition)
        if cfg.c4:
            checks.append(self._c4_page)
        if cfg.fineweb:
            checks.append(self._fineweb)
        words = doc.text.split()
        for check in checks:
            failed = check(doc.text, words)
            if failed:
                rule, detail = failed
                rec.count(rule)
                rec.reason = f"{rule}: {detail}"
                return None
        return doc

    # Each check returns (rule, detail) for the first rule that fails, or None.

    def _gopher(self, text: str, words: list[str]):
        cfg, on = self.cfg, self.on
        n = len(words)
        if on("gopher_word_count") and not cfg.min_words <= n <= cfg.max_words:
            return "gopher_word_count", f"{n} words, allowed {cfg.min_words}..{cfg.max_words}"
        if n == 0:
            return None
        mean = sum(map(len, words)) / n
        if on("gopher_mean_word_length") and not cfg.min_mean_word_length <= mean <= cfg.max_mean_word_length:
            return "gopher_mean_word_length", f"mean word length {mean:.1f}"
        symbols = text.count("#") + text.count("...") + text.count("…")
        if on("gopher_symbol_ratio") and symbols / n > cfg.max_symbol_word_ratio:
            return "gopher_symbol_ratio", f"{symbols / n:.2f} symbols per word"
        lines = [ln for ln in text.split("\n") if ln.strip()]
        if lines:
            bullets = sum(ln.lstrip().startswith(_BULLETS) for ln in lines) / len(lines)
            if on("gopher_bullet_lines") and bullets > cfg.max_bullet_lines_ratio:
                return "gopher_bullet_lines", f"{bullets:.0%} of lines are bullets"
            ellipsis = sum(ln.rstrip().endswith(("...", "…")) for ln in lines) / len(lines)
            if on("gopher_ellipsis_lines") and ellipsis > cfg.max_ellipsis_lines_ratio:
                return "gopher_ellipsis_lines", f"{ellipsis:.0%} of lines end with an ellipsis"
        alpha = sum(map(bool, map(_ALPHA.search, words))) / n     # map: no Python frame per word
        if on("gopher_alpha_words") and alpha < cfg.min_alpha_words_ratio:
            return "gopher_alpha_words", f"only {alpha:.0%} of words have a letter"
        stops = sum(map(_STOP_WORDS.__contains__, map(str.lower, words)))
        if on("gopher_stop_words") and stops < cfg.min_stop_words:
            return "gopher_stop_words", f"{stops} stop words"
        return None

    def _repetition(self, text: str, words: list[str]):
        cfg, on = self.cfg, self.on
        lines = [ln for ln in text.split("\n") if ln.strip()]
        paras = [p for p in re.split(r"\n{2,}", text) if p.strip()]
        line_frac, line_chars = _dup_fraction(lines)
        para_frac, para_chars = _dup_fraction(paras)
        for rule, value, limit in (("gopher_dup_lines", line_frac, cfg.dup_line_frac),
                                   ("gopher_dup_paragraphs", para_frac, cfg.dup_para_frac),
                                   ("gopher_dup_line_chars", line_chars, cfg.dup_line_char_frac),
                                   ("gopher_dup_paragraph_chars", para_chars, cfg.dup_para_char_frac)):
            if on(rule) and value > limit:
                return rule, f"{value:.2f} > {limit}"
        if len(words) < 2:
            return None
        # Python's string hash as the word id: equal words, equal ids, and no dict to fill.
        ids = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        total = int(lengths.sum()) or 1
        cum = np.concatenate(([0], np.cumsum(lengths)))
        if on("gopher_top_ngram"):
            for n, limit in zip((2, 3, 4), cfg.top_ngram_char_frac):
                if len(words) < n:
                    break
                uniq, first, counts = np.unique(_ngram_hashes(ids, n), return_index=True, return_counts=True)
                top = int(np.argmax(counts))
                if counts[top] < 2:
                    continue
                start = int(first[top])
                frac = int(cum[start + n] - cum[start]) * int(counts[top]) / total
                if frac > limit:
                    return "gopher_top_ngram", f"top {n}-gram covers {frac:.2f} > {limit}"
        if on("gopher_dup_ngram"):
            for n, limit in zip(range(5, 11), cfg.dup_ngram_char_frac):
                if len(words) < n:
                    break
                _, first_idx, inverse = np.unique(_ngram_hashes(ids, n), return_index=True,
                                                  return_inverse=True)
                starts = np.nonzero(first_idx[inverse] < np.arange(len(inverse)))[0]
                if len(starts) == 0:
                    break      # no repeated n-gram means no longer repeat either
                # words covered by any repeated n-gram (union of [start, start + n))
                diff = np.zeros(len(words) + 1, dtype=np.int64)
                np.add.at(diff, starts, 1)
                np.add.at(diff, starts + n, -1)
                covered = np.cumsum(diff[:-1]) > 0
                frac = int(lengths[covered].sum()) / total
                if frac > limit:
                    return "gopher_dup_ngram", f"repeated {n}-grams cover {frac:.2f} > {limit}"
        return None

    def _c4_lines(self, text: str, rec: Record) -> str:
        kept = []
        for line in text.split("\n"):
            s = line.strip()
            low = s.lower()
            if (not s.endswith(_TERMINAL) or len(s.split()) < self.cfg.c4_min_words_per_line
                    or "javascript" in low or any(p in low for p in _POLICY)):
                rec.count("c4_lines_removed")
                continue
            kept.append(s)
        return "\n".join(kept)

    def _c4_page(self, text: str, words: list[str]):
        low = text.lower()
        if self.on("c4_lorem_ipsum") and "lorem ipsum" in low:
            return "c4_lorem_ipsum", "contains 'lorem ipsum'"
        if self.on("c4_curly_bracket") and "{" in text:
            return "c4_curly_bracket", "contains '{'"
        sentences = len(_SENTENCE_END.findall(text))
        if self.on("c4_min_sentences") and sentences < self.cfg.c4_min_sentences:
            return "c4_min_sentences", f"{sentences} sentences < {self.cfg.c4_min_sentences}"
        return None

    def _fineweb(self, text: str, words: list[str]):
        cfg, on = self.cfg, self.on
        lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
        if not lines:
            return None
        punct = sum(ln.endswith(_TERMINAL) for ln in lines) / len(lines)
        if on("fineweb_line_punct") and punct < cfg.fineweb_line_punct_thr:
            return "fineweb_line_punct", f"{punct:.2f} of lines end in punctuation"
        short = sum(len(ln) <= cfg.fineweb_short_line_length for ln in lines) / len(lines)
        if on("fineweb_short_lines") and short > cfg.fineweb_short_line_thr:
            return "fineweb_short_lines", f"{short:.2f} of lines are short"
        counts = Counter(lines)
        dup_chars = sum(len(ln) * (c - 1) for ln, c in counts.items() if c > 1)
        ratio = dup_chars / max(1, len(text.replace("\n", "")))
        if on("fineweb_char_dup") and ratio > cfg.fineweb_char_dup_ratio:
            return "fineweb_char_dup", f"{ratio:.3f} of characters in repeated lines"
        newlines = text.count("\n") / max(1, len(words))
        if on("fineweb_new_lines") and newlines > cfg.fineweb_new_line_ratio:
            return "fineweb_new_lines", f"{newlines:.2f} line breaks per word"
        return None
