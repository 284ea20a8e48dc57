"""Each cleaning step on small real or crafted text."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.data.config import (DataConfig, DecontaminateConfig, LangIdConfig, NlpConfig, NormalizeConfig,
                                 PiiConfig, QualityConfig)
from lmforge.data.document import Document
from lmforge.data.steps import Record
from lmforge.errors import UserError
from lmforge.recipe import from_dict

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
UD = SHARED / "ud_sentences"
needs_ud = pytest.mark.skipif(not UD.is_dir(), reason=f"shared data not found at {UD}")

PROSE = ("The committee met on Tuesday to discuss the budget for the coming year. Members agreed that "
         "the library should have longer opening hours, and that the park needs new benches. Several "
         "residents spoke about traffic on the main road, which has grown since the bridge was closed. "
         "The chair thanked everyone for coming and said that the next meeting will be held in March, "
         "when the final numbers are known and the council has voted on the plan.")


def doc(text: str) -> Document:
    return Document("id", text, "test", "mem", "", "2024-01-01T00:00:00+00:00")


def run(step, text: str):
    rec = Record()
    out = step.apply(doc(text), rec)
    return out, rec


def test_normalize_repairs_and_tidies():
    from lmforge.data.normalize import Normalize
    raw = b"Caf\xc3\xa9 bad\xff\xfe bytes\r\n\r\n\r\n\r\n\r\n    indented  code\x00\x07   \nend".decode(
        "utf-8", "surrogateescape")
    out, rec = run(Normalize(NormalizeConfig()), "Cafe\u0301 " + raw)
    assert rec.counts["invalid_utf8_bytes"] == 2 and rec.counts["control_chars"] == 2
    assert out.text.startswith("Café Café bad\ufffd\ufffd bytes\n\n\n    indented code\nend")
    assert "\r" not in out.text


def test_pii_redacts_each_kind_and_keeps_look_alikes():
    from lmforge.data.pii import Pii
    text = ("Write to jane.roe@example.org or +44 20 7946 0958. Host 8.8.8.8 and 2001:4860:4860::8888; "
            "card 4111 1111 1111 1111; IBAN GB82 WEST 1234 5698 7654 32; key AKIAIOSFODNN7EXAMPLE. "
            "Keep 127.0.0.1, version 3.11.7, 1234 5678 9012 3456, std::move and 3.14159.")
    out, rec = run(Pii(PiiConfig()), text)
    for tag in ("<EMAIL>", "<PHONE>", "<IP_ADDRESS>", "<CREDIT_CARD>", "<IBAN>", "<SECRET>"):
        assert tag in out.text
    assert rec.counts == {"email": 1, "phone": 1, "ip": 2, "credit_card": 1, "iban": 1, "secret": 1}
    for kept in ("127.0.0.1", "3.11.7", "1234 5678 9012 3456", "std::move", "3.14159"):
        assert kept in out.text
    dropped, rec = run(Pii(PiiConfig(max_hits=3)), text)
    assert dropped is None and "max_hits" in rec.reason


def test_quality_keeps_prose_and_names_the_rule_that_fires():
    from lmforge.data.quality import Quality
    step = Quality(QualityConfig())
    assert run(step, PROSE)[0] is not None
    out, rec = run(step, "buy now " * 100)
    assert out is None and rec.reason.startswith("gopher_")
    out, rec = run(step, PROSE + " #news #sale #deal" * 5)
    assert out is None and rec.reason.startswith("gopher_symbol_ratio")
    out, rec = run(Quality(QualityConfig(skip_rules=["gopher_word_count"])), "The cat and the dog.")
    assert out is not None
    repeated = "\n".join([PROSE] * 4)
    assert run(step, repeated)[1].reason.split(":")[0] in ("gopher_dup_lines", "gopher_dup_line_chars")


def test_quality_c4_and_fineweb_rules():
    from lmforge.data.quality import Quality
    c4 = Quality(QualityConfig(c4=True, gopher=False, gopher_repetition=False, c4_min_sentences=2))
    page = "Menu\nHome | About\n" + PROSE + "\nPlease enable JavaScript to view this site.\nOur privacy policy applies."
    out, rec = run(c4, page)
    assert out is not None and out.text == PROSE and rec.counts["c4_lines_removed"] == 4
    assert run(c4, PROSE + " Use {braces}.")[1].reason.startswith("c4_curly_bracket")
    fw = Quality(QualityConfig(fineweb=True, gopher=False, gopher_repetition=False))
    assert run(fw, PROSE)[0] is not None
    assert run(fw, "\n".join(["item one", "item two", "item three", "item four"] * 3))[0] is None
    with pytest.raises(UserError, match="skip_rules"):
        from_dict(QualityConfig, {"skip_rules": ["gopher_nope"]}, "recipe.data.quality")


@needs_ud
def test_langid_on_six_languages():
    from lmforge.data.langid import LangId
    step = LangId(LangIdConfig(allow=[]))
    for lang in ("en", "de", "fr", "ru", "ja", "zh"):
        lines = (UD / f"{lang}_{'ewt' if lang == 'en' else 'gsd'}-ud-test.sentences.txt").read_text().splitlines()
        out, _ = run(step, " ".join(lines[:20]))
        assert out.meta["language"] == lang
    out, rec = run(LangId(LangIdConfig(allow=["en"])), " ".join(
        (UD / "de_gsd-ud-test.sentences.txt").read_text().splitlines()[:10]))
    assert out is None and "de" in rec.reason


def test_exact_and_minhash_decisions():
    from lmforge.data.config import ExactDedupConfig, MinHashConfig
    from lmforge.data.dedup import ExactDedup, MinHashDedup
    exact = ExactDedup(ExactDedupConfig())
    keys = [run(exact, t)[1].key for t in (PROSE, PROSE, PROSE + ".")]
    assert [exact.decide(k, doc("x")) for k in keys] == [None, "exact duplicate of an earlier document", None]
    near = MinHashDedup(MinHashConfig(), seed=0)
    variant = PROSE.replace("Tuesday", "Wednesday")
    other = "Completely different words about ships, harbours, sailors and the weather at sea today."
    decisions = [near.decide(run(near, t)[1].key, None) for t in (PROSE, variant, other)]
    assert decisions[0] is None and decisions[1].startswith("near duplicate") and decisions[2] is None
    assert near.summary()["duplicate_clusters"] == 1


def test_minhash_band_index_matches_a_dict_per_band():
    import random
    from lmforge.data.dedup import _BandIndex
    rng = random.Random(0)
    index, dicts = _BandIndex(bands=3, flush_every=4), [{}, {}, {}]    # flushes to the sorted arrays often
    used = [0, 2**64 - 1]
    for owner in range(500):
        keys = [rng.choice(used) if rng.random() < 0.1 else rng.getrandbits(64) for _ in range(3)]
        used += keys                      # old keys come back, in their own band or another one
        expected = next((d[k] for d, k in zip(dicts, keys) if k in d), None)
        assert index.first_owner(keys) == expected
        if expected is None:
            index.add(keys, owner)
            for d, k in zip(dicts, keys):
                d[k] = owner


def test_decontaminate_drops_or_flags(tmp_path):
    from lmforge.data.decontaminate import Decontaminate
    evalset = tmp_path / "eval.jsonl"
    evalset.write_text('{"question": "' + PROSE[:120] + '", "answer": "yes"}\n')
    out, rec = run(Decontaminate(DecontaminateConfig(files=[str(evalset)])), "Intro. " + PROSE)
    assert out is None and "13-grams" in rec.reason
    out, _ = run(Decontaminate(DecontaminateConfig(files=[str(evalset)], action="flag")), PROSE)
    assert out.meta["contaminated"] is True
    assert run(Decontaminate(DecontaminateConfig(files=[str(evalset)])), "Short unrelated text.")[0] is not None


def test_nlp_options():
    from lmforge.data.nlp import Nlp
    text = "The Cats were Running quickly, and the dogs barked."
    assert run(Nlp(NlpConfig(lowercase=True)), text)[0].text == text.lower()
    assert run(Nlp(NlpConfig(remove_stop_words=True)), text)[0].text == "Cats Running quickly, dogs barked."
    assert run(Nlp(NlpConfig(stem=True, lowercase=True)), text)[0].text.startswith("the cat were run quick")
    assert "cat" in run(Nlp(NlpConfig(lemmatize=True, lowercase=True)), text)[0].text.split()


def test_config_defaults_and_validation():
    cfg = DataConfig()
    assert cfg.sources[0].kind == "python_docs" and cfg.steps == ["normalize", "exact_dedup", "pii"]
    with pytest.raises(UserError, match="did you mean 'ngram'"):
        from_dict(DataConfig, {"minhash": {"ngrams": 5}}, "recipe.data")
    with pytest.raises(UserError, match="steps"):
        from_dict(DataConfig, {"steps": ["normalize", "dedupe"]}, "recipe.data")
    with pytest.raises(UserError, match="needs a path"):
        from_dict(DataConfig, {"sources": [{"kind": "files"}]}, "recipe.data")


def test_sources_need_distinct_labels():
    with pytest.raises(UserError, match="two sources are labelled 'files'"):
        from_dict(DataConfig, {"sources": [{"kind": "files", "path": "a"}, {"kind": "files", "path": "b"}]},
                  "recipe.data")


def test_top_ngram_ties_go_to_the_first_occurring_ngram():
    # n-gram ids are string hashes, which change from process to process: a tie between two
    # equally frequent n-grams must be settled by position, or the same document could be
    # kept in one run and removed in the next
    import numpy as np
    from lmforge.data.quality import _top_count
    assert _top_count(np.array([9, 3, 9, 3, 7], dtype=np.uint64)) == (2, 0)
    assert _top_count(np.array([3, 9, 3, 9, 7], dtype=np.uint64)) == (2, 0)
    assert _top_count(np.array([7, 3, 9, 3, 9, 9], dtype=np.uint64)) == (3, 2)
    assert _top_count(np.array([1, 2, 3], dtype=np.uint64)) == (1, 0)


def _luhn_complete(body: str) -> str:
    """body + the check digit that makes it pass Luhn (written from the definition: double every
    second digit from the right of the full number, subtract 9 from doubles above 9)."""
    for check in "0123456789":
        digits = [int(c) for c in body + check][::-1]
        if sum(d if i % 2 == 0 else (2 * d - 9 if 2 * d > 9 else 2 * d) for i, d in enumerate(digits)) % 10 == 0:
            return body + check
    raise AssertionError


def _iban(country: str, bban: str) -> str:
    """A valid IBAN from ISO 13616's check digits: 98 - (BBAN + country + '00' as digits) mod 97."""
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    return f"{country}{98 - number % 97:02d}{bban}"


@pytest.mark.parametrize("text, redacted", [
    ("4222222222222", True),                              # Visa, 13 digits: the shortest
    (_luhn_complete("6" + "0" * 17), True),               # 19 digits: the longest
    ("378282246310005", True), ("5555555555554444", True), ("2223003122003222", True),
    ("4111111111111112", False), ("4242424242424241", False),   # one digit off: Luhn fails
    (_luhn_complete("7" + "1" * 14), False),              # no issuer starts with 7
    ("x4111111111111111", False), ("_4111111111111111", False), ("-4111111111111111", False),
    ("card:4111111111111111", True),
])
def test_card_numbers_need_luhn_an_issuer_and_a_clean_start(text, redacted):
    from lmforge.data.pii import redact
    out, hits = redact(text, ["credit_card"])
    assert (hits.get("credit_card") == 1) == redacted and ("<CREDIT_CARD>" in out) == redacted, out


@pytest.mark.parametrize("bban, redacted", [
    ("86011117947"[:11], True),                                  # 15 characters (Norway's length)
    ("A" * 30, True),                                            # 34: the longest allowed
    ("A" * 31, False),                                           # 35: too long to be one
])
def test_iban_length_and_checksum(bban, redacted):
    from lmforge.data.pii import redact
    iban = _iban("NO", bban)
    out, hits = redact(f"pay {iban} now", ["iban"])
    assert (hits.get("iban") == 1) == redacted, (iban, len(iban), out)
    wrong = iban[:2] + f"{(int(iban[2:4]) + 1) % 100:02d}" + iban[4:]
    assert redact(f"pay {wrong} now", ["iban"])[1] == {}       # a wrong check digit is not an IBAN


@pytest.mark.parametrize("text, redacted", [
    ("call +1 23 4567 today", True),          # 7 digits: the fewest
    ("call +1 23 456 today", False),          # 6
    ("call +123 4567 8901 2345 today", True),  # 15 digits: the most
    ("call +123 4567 8901 23 456 today", False),   # 16
    ("v.+1 23 4567 today", False),            # glued to a dot: part of something else
])
def test_phone_digit_counts_and_left_context(text, redacted):
    from lmforge.data.pii import redact
    out, hits = redact(text, ["phone"])
    assert (hits.get("phone") == 1) == redacted, out


WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "and", "that"]   # mean length 4.0


def _words(n: int, extra: list[str] = ()) -> str:
    return " ".join([WORDS[i % 10] for i in range(n - len(extra))] + list(extra))


def _verdict(cfg: QualityConfig, text: str) -> str | None:
    from lmforge.data.quality import Quality
    out, rec = run(Quality(cfg), text)
    return None if out is not None else rec.reason


GOPHER = dict(gopher_repetition=False)


@pytest.mark.parametrize("cfg, text, reason", [
    (GOPHER, _words(50), None),
    (GOPHER, _words(49), "gopher_word_count: 49 words, allowed 50..100000"),
    ({**GOPHER, "max_words": 60}, _words(60), None),
    ({**GOPHER, "max_words": 60}, _words(61), "gopher_word_count: 61 words, allowed 50..60"),
    (GOPHER, " ".join(["the"] * 50), None),                                   # mean length exactly 3
    (GOPHER, " ".join(["the"] * 49 + ["an"]), "gopher_mean_word_length: mean word length 3.0"),
    ({**GOPHER, "min_stop_words": 0}, " ".join(["abcdefghij"] * 50), None),   # exactly 10
    ({**GOPHER, "min_stop_words": 0}, " ".join(["abcdefghij"] * 49 + ["abcdefghijk"]),
     "gopher_mean_word_length: mean word length 10.0"),
    (GOPHER, _words(50, ["#"] * 5), None),                                    # 0.1 symbols per word
    (GOPHER, _words(50, ["#"] * 6), "gopher_symbol_ratio: 0.12 symbols per word"),
    (GOPHER, "so... " * 4 + "… " + _words(45), None),                         # '...' and '…' count
    (GOPHER, "so... " * 5 + "… " + _words(44), "gopher_symbol_ratio: 0.12 symbols per word"),
    (GOPHER, _words(50, ["123"] * 10), None),                                 # 80% of words have a letter
    (GOPHER, _words(50, ["123"] * 11), "gopher_alpha_words: only 78% of words have a letter"),
    (GOPHER, " ".join(["café"] * 38 + ["the", "and"] + ["123"] * 10), None),  # non-ASCII text, same rule
    (GOPHER, " ".join(["café"] * 38 + ["the", "and"] + ["123"] * 11), "gopher_alpha_words: only 78% of words have a letter"),
    (GOPHER, " ".join(["quick"] * 48 + ["The", "AND"]), None),                # stop words in any case
    (GOPHER, " ".join(["quick"] * 49 + ["the"]), "gopher_stop_words: 1 stop words"),
])
def test_gopher_quality_rules_at_their_thresholds(cfg, text, reason):
    assert _verdict(QualityConfig(**cfg), text) == reason


def _lines(n: int, marked: int, mark) -> str:
    return "\n".join(mark(_words(6)) if i < marked else _words(6) for i in range(n))


@pytest.mark.parametrize("text, reason", [
    (_lines(10, 9, lambda s: "- " + s), None),                               # 90% bullets: the limit
    (_lines(10, 10, lambda s: "• " + s), "gopher_bullet_lines: 100% of lines are bullets"),
    (_lines(10, 3, lambda s: s + " ..."), None),                             # 30% ellipses: the limit
    (_lines(10, 4, lambda s: s + "…"), "gopher_ellipsis_lines: 40% of lines end with an ellipsis"),
])
def test_gopher_line_rules_at_their_thresholds(text, reason):
    assert _verdict(QualityConfig(gopher_repetition=False, max_symbol_word_ratio=1.0), text) == reason


ONLY = {"gopher_dup_lines": ["gopher_dup_line_chars", "gopher_dup_paragraphs", "gopher_dup_paragraph_chars"],
        "gopher_dup_line_chars": ["gopher_dup_lines", "gopher_dup_paragraphs", "gopher_dup_paragraph_chars"],
        "gopher_dup_paragraphs": ["gopher_dup_lines", "gopher_dup_line_chars", "gopher_dup_paragraph_chars"],
        "gopher_dup_paragraph_chars": ["gopher_dup_lines", "gopher_dup_line_chars", "gopher_dup_paragraphs"]}


def _repeats(n: int, copies: int, sep: str) -> str:
    parts = [f"{WORDS[i]} part number {i:02d} here" for i in range(n - copies)]   # all the same length
    return sep.join(parts + parts[:copies])


@pytest.mark.parametrize("rule, sep, copies, reason", [
    ("gopher_dup_lines", "\n", 3, None), ("gopher_dup_lines", "\n", 4, "gopher_dup_lines: 0.40 > 0.3"),
    ("gopher_dup_line_chars", "\n", 2, None), ("gopher_dup_line_chars", "\n", 3, "gopher_dup_line_chars: 0.30 > 0.2"),
    ("gopher_dup_paragraphs", "\n\n", 3, None),
    ("gopher_dup_paragraphs", "\n\n", 4, "gopher_dup_paragraphs: 0.40 > 0.3"),
    ("gopher_dup_paragraph_chars", "\n\n", 2, None),
    ("gopher_dup_paragraph_chars", "\n\n", 3, "gopher_dup_paragraph_chars: 0.30 > 0.2"),
])
def test_gopher_repetition_fractions_at_their_thresholds(rule, sep, copies, reason):
    cfg = QualityConfig(gopher=False, skip_rules=ONLY[rule] + ["gopher_top_ngram", "gopher_dup_ngram"])
    assert _verdict(cfg, _repeats(10, copies, sep)) == reason


def test_c4_line_and_page_rules_at_their_thresholds():
    from lmforge.data.quality import Quality
    c4 = QualityConfig(c4=True, gopher=False, gopher_repetition=False, c4_min_sentences=2)
    out, rec = run(Quality(c4), "One two three.\nOne two.\nAsk me why?\n“Quoted three words”\nno end here")
    assert out.text == "One two three.\nAsk me why?\n“Quoted three words”" and rec.counts["c4_lines_removed"] == 2
    five = "It is one. It is two! It is three? It is four. It is five."
    assert _verdict(QualityConfig(c4=True, gopher=False, gopher_repetition=False), five) is None
    four = "It is one. It is two! It is three? It is four."
    assert _verdict(QualityConfig(c4=True, gopher=False, gopher_repetition=False), four) == \
        "c4_min_sentences: 4 sentences < 5"
    assert _verdict(c4, "Some Lorem Ipsum text. And more.") == "c4_lorem_ipsum: contains 'lorem ipsum'"


@pytest.mark.parametrize("text, reason", [
    ("\n".join(["a line with an end that is long enough.", "no end here but long enough to count"] * 4), None),
    ("\n".join(["a long line of prose that goes on and on past thirty characters"] + ["short"] * 8),
     "fineweb_line_punct: 0.00 of lines end in punctuation"),
    ("\n".join(["a line that ends, well, right here."] * 1 + ["tiny."] * 3), "fineweb_short_lines: 0.75 of lines are short"),
])
def test_fineweb_rules(text, reason):
    cfg = QualityConfig(fineweb=True, gopher=False, gopher_repetition=False,
                        skip_rules=["fineweb_char_dup", "fineweb_new_lines"])
    assert _verdict(cfg, text) == reason


def test_exact_dedup_counts_clusters_and_drops_repeated_lines():
    from lmforge.data.config import ExactDedupConfig
    from lmforge.data.dedup import ExactDedup
    step = ExactDedup(ExactDedupConfig(lines=True, min_line_chars=10))
    texts = ["alpha line one here\nshort\ncommon footer line", "beta\ncommon footer line\nshort",
             "alpha line one here\nshort\ncommon footer line", "alpha line one here\nshort\ncommon footer line",
             "gamma text\n  common footer line  "]
    docs = [doc(t) for t in texts]
    decisions = [step.decide(run(step, t)[1].key, d) for t, d in zip(texts, docs)]
    assert decisions == [None, None, "exact duplicate of an earlier document", "exact duplicate of an earlier document",
                         None]
    # the footer (and nothing under 10 characters) goes from every later document that is kept
    assert [d.text for d in docs[:2]] + [docs[4].text] == \
        ["alpha line one here\nshort\ncommon footer line", "beta\nshort", "gamma text"]
    assert step.summary() == {"duplicate_clusters": 1, "largest_cluster": 3, "lines_removed": 2}
    assert ExactDedup(ExactDedupConfig()).summary() == {"duplicate_clusters": 0, "largest_cluster": 0,
                                                       "lines_removed": 0}
    plain = ExactDedup(ExactDedupConfig())
    d = doc("common footer line")
    plain.decide(run(plain, "x")[1].key, doc("common footer line"))
    assert plain.decide(run(plain, "y")[1].key, d) is None and d.text == "common footer line"   # lines off


def test_shingles_are_lower_cased_words_alike_in_ascii_and_unicode():
    from lmforge.data.dedup import shingle_hashes
    a, b = shingle_hashes("The Cat, sat on the MAT!", 2), shingle_hashes("the cat sat on the mat", 2)
    assert a.tolist() == b.tolist() and len(a) == 5
    assert shingle_hashes("Éa Éb Éc", 2).tolist() == shingle_hashes("éa éb éc", 2).tolist()
    assert len(set(shingle_hashes("one two three four", 2).tolist())) == 3
    assert shingle_hashes("one two three", 2).tolist() != shingle_hashes("two one three", 2).tolist()   # order counts
    assert all(h < 2 ** 32 for h in shingle_hashes("a b c d e f g", 3).tolist())
    assert len(shingle_hashes("", 3)) == 1 and len(shingle_hashes("one", 3)) == 1     # short texts: one shingle


@pytest.mark.parametrize("text, kinds, expected, hits", [
    ('api_key = "abcdefghijklmnop1234"', ["secret"], 'api_key = "<SECRET>"', {"secret": 1}),
    ("config: PASSWORD: hunter2hunter2hunter2 end", ["secret"], "config: PASSWORD: <SECRET> end", {"secret": 1}),
    ("mail jane@example.org now", ["phone"], "mail jane@example.org now", {}),     # only the kinds asked for
    ("IBAN XGB82 WEST 1234 5698 7654 32", ["iban"], "IBAN XGB82 WEST 1234 5698 7654 32", {}),   # glued to a letter
    ("see v8.8.8.8 here", ["ip"], "see v8.8.8.8 here", {}),
    ("bad 999.999.1.1 address", ["ip"], "bad 999.999.1.1 address", {}),         # not an address at all
    ("host 2a00::1 here", ["ip"], "host 2a00::1 here", {}),                     # 5 hex digits: a scope, not a host
    ("host 2a00::1:2 here", ["ip"], "host <IP_ADDRESS> here", {"ip": 1}),        # 6: an address
    ("هاتف +٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨ الآن", ["phone"], "هاتف <PHONE> الآن", {"phone": 1}),   # digits of another script
])
def test_redact_exact_output(text, kinds, expected, hits):
    from lmforge.data.pii import redact
    assert redact(text, kinds) == (expected, hits)


def test_pii_max_hits_drops_only_above_the_limit():
    from lmforge.data.pii import Pii
    text = "a@example.org b@example.org c@example.org"
    kept, rec = run(Pii(PiiConfig(max_hits=3)), text)
    assert kept is not None and kept.text == "<EMAIL> <EMAIL> <EMAIL>" and rec.counts == {"email": 3}
    dropped, rec = run(Pii(PiiConfig(max_hits=2)), text)
    assert dropped is None and rec.reason == "3 PII items > max_hits 2"
