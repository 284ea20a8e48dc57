"""The quality rules against their definitions (Gopher's repetition n-grams and FineWeb's line
rules written out plainly here), at their thresholds, and each one switched off by name."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lmforge.data.config import QUALITY_RULES, QualityConfig
from lmforge.data.document import Document
from lmforge.data.quality import Quality, _letter_words
from lmforge.data.steps import Record

NEVER, ALWAYS = 2.0, -1.0
ONLY_REPETITION = dict(gopher=False, gopher_repetition=True,
                       skip_rules=["gopher_dup_lines", "gopher_dup_paragraphs", "gopher_dup_line_chars",
                                   "gopher_dup_paragraph_chars"])
ONLY_FINEWEB = dict(gopher=False, gopher_repetition=False, fineweb=True)


def verdict(text: str, **cfg) -> str | None:
    rec = Record()
    out = Quality(QualityConfig(**cfg)).apply(Document("id", text, "t", "p", "", ""), rec)
    if out is None:
        assert rec.counts == {rec.reason.split(":")[0]: 1}
        return rec.reason
    return None


def top_ngram(words: list[str], n: int) -> tuple[int, float]:
    """Gopher: the most frequent word n-gram (the first to occur on ties), its count, and the share
    of all word characters its occurrences hold (count x its characters / all characters)."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    top = max(counts.values())
    first = next(g for g in grams if counts[g] == top)
    return top, top * sum(map(len, first)) / sum(map(len, words))


def dup_ngram(words: list[str], n: int) -> float:
    """Gopher: the share of word characters inside any occurrence of an n-gram seen earlier."""
    seen, covered = set(), set()
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            covered.update(range(i, i + n))
        seen.add(gram)
    return sum(len(words[i]) for i in covered) / sum(map(len, words))


def texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = ["a", "bb", "ccc", "dddd", "ee", "f", "gggggg", "hh"]
    return [" ".join(rng.choice(vocab[:rng.randint(2, 8)]) for _ in range(rng.randint(5, 40))) for _ in range(count)]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_top_ngram_share_is_the_definition(n):
    limits = [NEVER] * 3
    limits[n - 2] = ALWAYS
    for text in texts(60, seed=n):
        words = text.split()
        got = verdict(text, **ONLY_REPETITION, top_ngram_char_frac=limits, dup_ngram_char_frac=[NEVER] * 6)
        if len(words) < n or top_ngram(words, n)[0] < 2:
            assert got is None, text
        else:
            assert got == f"gopher_top_ngram: top {n}-gram covers {top_ngram(words, n)[1]:.2f} > -1.0", text


@pytest.mark.parametrize("n", range(5, 11))
def test_dup_ngram_share_is_the_definition(n):
    limits = [NEVER] * 6
    limits[n - 5] = ALWAYS
    for text in texts(60, seed=10 + n):
        words = text.split()
        got = verdict(text, **ONLY_REPETITION, top_ngram_char_frac=[NEVER] * 3, dup_ngram_char_frac=limits)
        shorter_repeat = all(dup_ngram(words, m) > 0 for m in range(5, n)) if len(words) >= n else False
        if len(words) < n or not shorter_repeat or dup_ngram(words, n) == 0:
            assert got is None, text
        else:
            assert got == f"gopher_dup_ngram: repeated {n}-grams cover {dup_ngram(words, n):.2f} > -1.0", text


def test_repetition_limits_are_exclusive():
    text = "x y c d x y e f"                       # "x y" twice: 4 of 8 characters
    assert verdict(text, **ONLY_REPETITION, top_ngram_char_frac=[0.5, NEVER, NEVER]) is None
    assert verdict(text, **ONLY_REPETITION, top_ngram_char_frac=[0.49, NEVER, NEVER]) == \
        "gopher_top_ngram: top 2-gram covers 0.50 > 0.49"
    text = "a b c d e a b c d e f g h i j k l m n o"   # the second "a b c d e": 5 of 20 characters
    no_top = dict(ONLY_REPETITION, top_ngram_char_frac=[NEVER] * 3)
    assert verdict(text, **no_top, dup_ngram_char_frac=[0.25, NEVER, NEVER, NEVER, NEVER, NEVER]) is None
    assert verdict(text, **no_top, dup_ngram_char_frac=[0.24, NEVER, NEVER, NEVER, NEVER, NEVER]) == \
        "gopher_dup_ngram: repeated 5-grams cover 0.25 > 0.24"
    # a repeated first bigram is counted from the text's first character
    assert verdict("abc de abc de zz", **ONLY_REPETITION, top_ngram_char_frac=[ALWAYS, NEVER, NEVER]) == \
        "gopher_top_ngram: top 2-gram covers 0.83 > -1.0"


LINES4 = "\n".join(["this line ends here.", "this one does not end", "nor does this line", "and neither this"])


def test_fineweb_line_rules_at_their_thresholds():
    skip_after = ["fineweb_short_lines", "fineweb_char_dup", "fineweb_new_lines"]
    assert verdict(LINES4, **ONLY_FINEWEB, fineweb_line_punct_thr=0.25, skip_rules=skip_after) is None
    assert verdict(LINES4, **ONLY_FINEWEB, fineweb_line_punct_thr=0.26, skip_rules=skip_after) == \
        "fineweb_line_punct: 0.25 of lines end in punctuation"
    ten = "\n".join(["one line that ends."] + ["a line without an end"] * 9)
    assert verdict(ten, **ONLY_FINEWEB, skip_rules=skip_after) == "fineweb_line_punct: 0.10 of lines end in punctuation"
    short = "\n".join(["x" * 29 + ".", "y" * 30 + ".", "z" * 28 + ".", "w" * 40 + "."])   # 30 and 29 are short
    rules = dict(ONLY_FINEWEB, fineweb_short_line_length=30, skip_rules=["fineweb_char_dup", "fineweb_new_lines"])
    assert verdict(short.replace("x" * 29 + ".", "x" * 30 + "."), **rules, fineweb_short_line_thr=0.25) is None
    assert verdict(short, **rules, fineweb_short_line_thr=0.5) is None
    assert verdict(short, **rules, fineweb_short_line_thr=0.49) == "fineweb_short_lines: 0.50 of lines are short"


def test_fineweb_repeated_line_characters_and_line_breaks():
    text = "the same line again.\nthe same line again.\nthe same line again.\nsomething else here."
    dup = 20 * 2 / len(text.replace("\n", ""))     # two later copies of a 20-character line
    rules = dict(ONLY_FINEWEB, fineweb_short_line_thr=1.0, skip_rules=["fineweb_new_lines"])
    assert dup == 0.5
    assert verdict(text, **rules, fineweb_char_dup_ratio=0.5) is None                 # the limit itself passes
    assert verdict(text, **rules, fineweb_char_dup_ratio=0.49) == "fineweb_char_dup: 0.500 of characters in repeated lines"
    assert verdict("one.\ntwo.\nthree.", **rules, fineweb_char_dup_ratio=0.0) is None
    words = "alpha beta gamma.\ndelta.\nepsilon zeta."       # 2 breaks, 6 words
    rules = dict(ONLY_FINEWEB, fineweb_short_line_thr=1.0, skip_rules=["fineweb_char_dup"])
    assert verdict(words, **rules, fineweb_new_line_ratio=1 / 3) is None
    assert verdict(words, **rules, fineweb_new_line_ratio=0.3) == "fineweb_new_lines: 0.33 line breaks per word"
    assert verdict("one.", **rules, fineweb_new_line_ratio=0.0) is None


# the first rule each text breaks, with the settings that isolate it
CASES = {
    "gopher_word_count": ({}, "just a few words here"),
    "gopher_mean_word_length": ({"min_words": 1}, "abcdefghijklmnop qrstuvwxyzabcdef"),
    "gopher_symbol_ratio": ({"min_words": 1, "min_mean_word_length": 0}, "the and of # # #"),
    "gopher_bullet_lines": ({"min_words": 1}, "\n".join(f"{b} the item and more" for b in "•-*●·‣▪–")),
    "gopher_ellipsis_lines": ({"min_words": 1, "max_symbol_word_ratio": 10}, "the and so on...\nthe and then...\nthe end"),
    "gopher_alpha_words": ({"min_words": 1, "min_mean_word_length": 0}, "the and 12 34 56 78 90"),
    "gopher_stop_words": ({"min_words": 1}, "cats sleep often"),
    "gopher_dup_lines": ({"gopher": False}, "same line\nsame line\nsame line\nother"),
    "gopher_dup_paragraphs": ({"gopher": False, "skip_rules": ["gopher_dup_lines"]}, "para one\n\npara one\n\npara one"),
    "gopher_dup_line_chars": ({"gopher": False, "dup_line_frac": 1.0}, "a long repeated line\na long repeated line\nb"),
    "gopher_dup_paragraph_chars": ({"gopher": False, "dup_line_frac": 1.0, "dup_para_frac": 1.0,
                                    "dup_line_char_frac": 1.0}, "a long paragraph\n\na long paragraph\n\nb"),
    "gopher_top_ngram": ({"gopher": False}, "to be to be to be to be"),
    "gopher_dup_ngram": ({"gopher": False, "skip_rules": ["gopher_top_ngram"]},
                         "one two three four five six one two three four five six"),
    "c4_lorem_ipsum": ({"gopher": False, "gopher_repetition": False, "c4": True}, "Lorem ipsum dolor sit amet, said he."),
    "c4_curly_bracket": ({"gopher": False, "gopher_repetition": False, "c4": True}, "A line with { in it, to be sure."),
    "c4_min_sentences": ({"gopher": False, "gopher_repetition": False, "c4": True}, "Only one sentence here, it ends."),
    "fineweb_line_punct": (ONLY_FINEWEB, "no end at all here"),
    "fineweb_short_lines": (ONLY_FINEWEB, "short.\ntiny.\nsmall."),
    "fineweb_char_dup": ({**ONLY_FINEWEB, "fineweb_short_line_thr": 1.0}, "same line.\nsame line.\nother line."),
    "fineweb_new_lines": ({**ONLY_FINEWEB, "fineweb_short_line_thr": 1.0}, "a.\nb.\nc."),
}


@pytest.mark.parametrize("rule", [r for r in QUALITY_RULES if r != "c4_lines"])
def test_every_rule_fires_on_its_case_and_can_be_switched_off_by_name(rule):
    cfg, text = CASES[rule]
    got = verdict(text, **cfg)
    assert got is not None and got.split(":")[0] == rule, got
    skipped = dict(cfg, skip_rules=cfg.get("skip_rules", []) + [rule])
    off = verdict(text, **skipped)
    assert off is None or off.split(":")[0] != rule


def test_c4_line_filter_can_be_switched_off():
    text = "A proper line that ends well.\nno end\nThis site uses cookies to track you."
    rec = Record()
    out = Quality(QualityConfig(gopher=False, gopher_repetition=False, c4=True, c4_min_sentences=1)).apply(
        Document("id", text, "t", "p", "", ""), rec)
    assert out.text == "A proper line that ends well." and rec.counts == {"c4_lines_removed": 2}
    cfg = QualityConfig(gopher=False, gopher_repetition=False, c4=True, c4_min_sentences=1, skip_rules=["c4_lines"])
    assert Quality(cfg).apply(Document("id", text, "t", "p", "", ""), Record()).text == text


def test_edge_texts_are_decided_without_errors():
    assert verdict("", min_words=0, gopher_repetition=False) is None            # no words: no ratios to take
    assert verdict("   \n  ", gopher=False) is None                             # no lines: nothing repeats
    assert verdict("abcdefghijklmnopqrstu", min_words=1, gopher_repetition=False) == \
        "gopher_mean_word_length: mean word length 21.0"                        # one word is still measured


@pytest.mark.parametrize("text", ["(hello) 1st #tag 42 --x-- a.b", "\"quoted\" [1] {x} 3.14 ...", "a1 1a _a_ 9"])
def test_letter_words_on_ascii_agree_with_the_unicode_definition(text):
    words = text.split()
    assert _letter_words(text, words) == sum(any(ch.isalpha() for ch in w) for w in words)


def test_rule_details_in_the_corners():
    no_top = dict(ONLY_REPETITION, top_ngram_char_frac=[10.0] * 3)      # overlapping copies pass 1
    same = "x x x x x x x x"                                   # every 5-gram the same one
    assert verdict(same, **no_top, dup_ngram_char_frac=[ALWAYS] + [NEVER] * 5) == \
        f"gopher_dup_ngram: repeated 5-grams cover {dup_ngram(same.split(), 5):.2f} > -1.0"
    # the 2-gram bound (6 words x 2 characters / 6) meets its limit, so counting moves on to 3-grams
    assert verdict("a b c a b c", **ONLY_REPETITION, top_ngram_char_frac=[2.0, ALWAYS, NEVER],
                   dup_ngram_char_frac=[NEVER] * 6) == "gopher_top_ngram: top 3-gram covers 1.00 > -1.0"
    assert verdict("one.\n", **ONLY_FINEWEB, fineweb_short_line_thr=1.0, fineweb_new_line_ratio=0.7) == \
        "fineweb_new_lines: 1.00 line breaks per word"
    assert verdict("A line with { in it, to be sure.", gopher=False, gopher_repetition=False, c4=True) == \
        "c4_curly_bracket: contains '{'"
