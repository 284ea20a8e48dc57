"""Heuristic quality filters with their published thresholds.

Gopher quality and repetition rules (Rae et al. 2021, "Scaling Language Models", App. A),
C4's line and page rules (Raffel et al. 2020) and FineWeb's extra rules (Penedo et al. 2024).
Every rule has a name; `skip_rules` switches single rules off and the removal reason names
the rule that fired, so the removal log says exactly why a document went.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property
from itertools import islice

import numpy as np

from lmforge.data.config import QualityConfig
from lmforge.data.steps import Record, Step

_STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}   # Gopher's list
_TERMINAL = ('.', '!', '?', '"', "'", '”', '’', '。', '！', '？')
_BULLETS = ("•", "-", "*", "●", "·", "‣", "▪", "–")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
           "use cookies")
_SENTENCE_END = re.compile(r"[.!?。！？]+(?:\s|$)")
_PARAGRAPH_BREAK = re.compile(r"\n{2,}")
_ALPHA = re.compile(r"[^\W\d_]")
# For _letter_words on ASCII text: letters become 'a', whitespace ' ', anything else goes.
_ASCII_LETTERS = bytes(c for c in range(128) if chr(c).isalpha())
_ASCII_SPACES = bytes(c for c in range(128) if chr(c).isspace())
_LETTER_RUNS = bytes.maketrans(_ASCII_LETTERS + _ASCII_SPACES,
                               b"a" * len(_ASCII_LETTERS) + b" " * len(_ASCII_SPACES))
_NOT_LETTER = bytes(c for c in range(128) if c not in _ASCII_LETTERS + _ASCII_SPACES)
_P = np.uint64(1_000_003)     # multiplier of the rolling n-gram hash (wraps mod 2**64)


def _dup_fraction(parts: list[str]) -> tuple[float, float]:
    """(share of parts that repeat an earlier one, share of characters in those repeats)."""
    if not parts:
        return 0.0, 0.0
    distinct = set(parts)
    total = sum(map(len, parts))
    return (len(parts) - len(distinct)) / len(parts), (total - sum(map(len, distinct))) / (total or 1)


def _letter_words(text: str, words: list[str]) -> int:
    """How many of `words` (text.split()) hold a letter, as _ALPHA defines one."""
    if text.isascii():
        runs = text.encode("ascii").translate(_LETTER_RUNS, _NOT_LETTER)   # one run of a's per such word
        return runs.count(b" a") + runs.startswith(b"a")
    return sum(map(bool, map(_ALPHA.search, words)))     # map: no Python frame per word


def _top_count(h: np.ndarray) -> tuple[int, int]:
    """(count, first position) of the most frequent value in h; on ties the one that occurs first.

    Ties are broken by position, not by value: the values are string hashes, which differ
    from one process to the next, and the result must not."""
    s = np.sort(h)
    same = s[1:] == s[:-1]
    if not same.any():
        return 1, 0
    edges = np.flatnonzero(np.concatenate(([True], ~same, [True])))    # bounds of the runs of equal values
    counts = np.diff(edges)
    top = counts.max()
    tied = s[edges[:-1][counts == top]]
    return int(top), int(np.argmax(np.isin(h, tied)))


def _later_copies(h: np.ndarray) -> np.ndarray:
    """Positions whose value occurred at an earlier position."""
    # Most texts repeat no long n-gram, which a plain sort shows several times faster than a stable one.
    s = np.sort(h)
    if (s[1:] != s[:-1]).all():
        return s[:0]
    order = np.argsort(h, kind="stable")      # stable: the first copy leads each run
    s = h[order]
    return order[1:][s[1:] == s[:-1]]


class _Text:
    """The splits of one text that several rules read, each made once and only when needed."""

    def __init__(self, text: str):
        self.text = text
        self._ngrams: list[np.ndarray] = []

    @cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @cached_property
    def lines(self) -> list[str]:
        """Non-blank lines as written."""
        return [ln for ln in self.text.split("\n") if ln.strip()]

    @cached_property
    def stripped_lines(self) -> list[str]:
        return [ln.strip() for ln in self.lines]

    @cached_property
    def word_lengths(self) -> np.ndarray:
        return np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))

    def ngram_hashes(self, n: int) -> np.ndarray:
        """Rolling hashes of the word n-grams, each order built from the one below.

        Python's string hash is the word id: equal words, equal ids, and no dict to fill."""
        grams, words = self._ngrams, self.words
        if not grams:
            grams.append(np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64))
        while len(grams) < n:
            grams.append(grams[-1][:-1] * _P + grams[0][len(grams):])
        return grams[n - 1]


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
        text = _Text(doc.text)
        for check in checks:
            failed = check(text)
            if failed:
                rule, detail = failed
                rec.count(rule)
                rec.reason = f"{rule}: {detail}"
                return None
        return doc

    # Each check returns (rule, detail) for the first rule that fails, or None.

    def _gopher(self, t: _Text):
        cfg, on = self.cfg, self.on
        text, words = t.text, t.words
        n = len(words)
        if on("gopher_word_count") and not cfg.min_words <= n <= cfg.max_words:
            return "gopher_word_count", f"{n} words, allowed {cfg.min_words}..{cfg.max_words}"
        if n == 0:
            return None
        mean = int(t.word_lengths.sum()) / n
        if on("gopher_mean_word_length") and not cfg.min_mean_word_length <= mean <= cfg.max_mean_word_length:
            return "gopher_mean_word_length", f"mean word length {mean:.1f}"
        symbols = text.count("#") + text.count("...") + text.count("…")
        if on("gopher_symbol_ratio") and symbols / n > cfg.max_symbol_word_ratio:
            return "gopher_symbol_ratio", f"{symbols / n:.2f} symbols per word"
        lines = t.stripped_lines
        if lines:
            # The substring tests spare the per-line loops for the many texts without bullets or ellipses.
            has_bullet = any(b in text for b in _BULLETS)
            bullets = sum([ln.startswith(_BULLETS) for ln in lines]) / len(lines) if has_bullet else 0.0
            if on("gopher_bullet_lines") and bullets > cfg.max_bullet_lines_ratio:
                return "gopher_bullet_lines", f"{bullets:.0%} of lines are bullets"
            has_ellipsis = "..." in text or "…" in text
            ellipsis = sum([ln.endswith(("...", "…")) for ln in lines]) / len(lines) if has_ellipsis else 0.0
            if on("gopher_ellipsis_lines") and ellipsis > cfg.max_ellipsis_lines_ratio:
                return "gopher_ellipsis_lines", f"{ellipsis:.0%} of lines end with an ellipsis"
        alpha = _letter_words(text, words) / n
        if on("gopher_alpha_words") and alpha < cfg.min_alpha_words_ratio:
            return "gopher_alpha_words", f"only {alpha:.0%} of words have a letter"
        # Counting stops at min_stop_words: the exact number only matters below it.
        stops = len(list(islice(filter(_STOP_WORDS.__contains__, map(str.lower, words)),
                                max(0, cfg.min_stop_words))))
        if on("gopher_stop_words") and stops < cfg.min_stop_words:
            return "gopher_stop_words", f"{stops} stop words"
        return None

    def _repetition(self, t: _Text):
        cfg, on = self.cfg, self.on
        text, words = t.text, t.words
        paras = _PARAGRAPH_BREAK.split(text) if "\n\n" in text else [text]
        paras = [p for p in paras if p.strip()]
        line_frac, line_chars = _dup_fraction(t.lines)
        para_frac, para_chars = _dup_fraction(paras)
        for rule, value, limit in (("gopher_dup_lines", line_frac, cfg.dup_line_frac),
                                   ("gopher_dup_paragraphs", para_frac, cfg.dup_para_frac),
                                   ("gopher_dup_line_chars", line_chars, cfg.dup_line_char_frac),
                                   ("gopher_dup_paragraph_chars", para_chars, cfg.dup_para_char_frac)):
            if on(rule) and value > limit:
                return rule, f"{value:.2f} > {limit}"
        if len(words) < 2:
            return None
        lengths = t.word_lengths
        total = int(lengths.sum()) or 1
        cum = np.concatenate(([0], np.cumsum(lengths)))
        if on("gopher_top_ngram"):
            most = len(words)       # copies an n-gram can have: no more than its (n-1)-gram prefix
            for n, limit in zip((2, 3, 4), cfg.top_ngram_char_frac):
                if len(words) < n:
                    break
                if most * int((cum[n:] - cum[:-n]).max()) / total <= limit:
                    continue        # even the longest n-gram with that many copies stays below the limit
                count, start = _top_count(t.ngram_hashes(n))
                most = count
                if count < 2:
                    continue
                frac = int(cum[start + n] - cum[start]) * count / total
                if frac > limit:
                    return "gopher_top_ngram", f"top {n}-gram covers {frac:.2f} > {limit}"
        if on("gopher_dup_ngram"):
            limits = cfg.dup_ngram_char_frac
            for i, (n, limit) in enumerate(zip(range(5, 11), limits)):
                if len(words) < n:
                    break
                starts = _later_copies(t.ngram_hashes(n))
                if len(starts) == 0:
                    break      # no repeated n-gram means no longer repeat either
                # words covered by any repeated n-gram (union of [start, start + n))
                diff = np.zeros(len(words) + 1, dtype=np.int64)
                diff[starts] += 1           # starts are distinct, so plain indexing adds once each
                diff[starts + n] -= 1
                covered = np.cumsum(diff[:-1]) > 0
                frac = int(lengths[covered].sum()) / total
                if frac > limit:
                    return "gopher_dup_ngram", f"repeated {n}-grams cover {frac:.2f} > {limit}"
                # A repeated longer n-gram holds repeated shorter ones, so longer repeats cover
                # no more than this: once no limit ahead is lower, none of them can fire.
                if frac <= min(limits[i:]):
                    break
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

    def _c4_page(self, t: _Text):
        text = t.text
        low = text.lower()
        if self.on("c4_lorem_ipsum") and "lorem ipsum" in low:
            return "c4_lorem_ipsum", "contains 'lorem ipsum'"
        if self.on("c4_curly_bracket") and "{" in text:
            return "c4_curly_bracket", "contains '{'"
        sentences = len(_SENTENCE_END.findall(text))
        if self.on("c4_min_sentences") and sentences < self.cfg.c4_min_sentences:
            return "c4_min_sentences", f"{sentences} sentences < {self.cfg.c4_min_sentences}"
        return None

    def _fineweb(self, t: _Text):
        cfg, on = self.cfg, self.on
        text, lines = t.text, t.stripped_lines
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
        newlines = text.count("\n") / max(1, len(t.words))
        if on("fineweb_new_lines") and newlines > cfg.fineweb_new_line_ratio:
            return "fineweb_new_lines", f"{newlines:.2f} line breaks per word"
        return None
