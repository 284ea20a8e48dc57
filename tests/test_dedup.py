"""Near-duplicate removal (MinHash LSH) against its definition, its band index against a dict,
and exact deduplication's edge cases."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from lmforge.data.config import ExactDedupConfig, MinHashConfig
from lmforge.data.dedup import ExactDedup, MinHashDedup, _BandIndex
from lmforge.data.document import Document
from lmforge.data.steps import Record

M64 = (1 << 64) - 1


def doc(text: str, id: str = "id") -> Document:
    return Document(id, text, "test", "mem", "", "2024-01-01T00:00:00+00:00")


def keyed(step, text: str, id: str = "id"):
    rec = Record()
    d = step.apply(doc(text, id), rec)
    return rec.key, d


def reference_bands(text: str, step: MinHashDedup) -> list[int]:
    """The documented MinHash, with Python integers: crc32 of each lower-cased word, n-gram
    g = sum of h_i * 1000003^(n-1-i) kept to 32 bits, hash j = ((a_j g + b_j) mod 2^64) >> 32,
    the signature its minimum over the n-grams, band k = sum_i sig[k*rows + i] * 1000003^i mod 2^64."""
    cfg = step.cfg
    words = [zlib.crc32(w.encode()) for w in re.findall(r"\w+", text.lower())] or [zlib.crc32(b"")]
    n = min(cfg.ngram, len(words))
    grams = []
    for s in range(len(words) - n + 1):
        g = 0
        for k in range(n):
            g = (g * 1_000_003 + words[s + k]) & M64
        grams.append(g & 0xFFFFFFFF)
    a, b = [int(x) for x in step.a], [int(x) for x in step.b]
    signature = [min(((a[j] * g + b[j]) & M64) >> 32 for g in grams) for j in range(len(a))]
    return [sum(signature[band * cfg.rows + i] * pow(1_000_003, i, 1 << 64) for i in range(cfg.rows)) & M64
            for band in range(cfg.bands)]


@pytest.mark.parametrize("text", [
    "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat",
    "Größere Hunde laufen schneller als kleine Katzen über die Straße und den Platz",
    "tiny",
])
def test_minhash_band_keys_follow_the_documented_hash(text):
    step = MinHashDedup(MinHashConfig(ngram=3, bands=4, rows=3), seed=5)
    (doc_id, bands), _ = keyed(step, text, "d1")
    assert doc_id == "d1"
    assert bands == reference_bands(text, step)
    assert all(isinstance(b, int) for b in bands)


def test_minhash_keeps_the_first_of_each_cluster_and_counts_the_clusters():
    step = MinHashDedup(MinHashConfig(), seed=1)
    base = " ".join(f"word{i}" for i in range(300))
    other = " ".join(f"term{i}" for i in range(300))
    texts = {"a": base, "b": other, "c": base, "d": base.replace("word7 ", "word7x "), "e": other,
             "f": " ".join(f"thing{i}" for i in range(300))}
    decisions = {i: step.decide(keyed(step, t, i)[0], None) for i, t in texts.items()}
    assert decisions == {"a": None, "b": None, "c": "near duplicate of a", "d": "near duplicate of a",
                         "e": "near duplicate of b", "f": None}
    assert step.summary() == {"duplicate_clusters": 2, "largest_cluster": 3}
    assert MinHashDedup(MinHashConfig(), seed=1).summary() == {"duplicate_clusters": 0, "largest_cluster": 0}


def test_the_band_index_answers_like_a_dict_across_flushes():
    rng = np.random.default_rng(3)
    bands = 4
    index = _BandIndex(bands, flush_every=3)
    reference: list[dict[int, int]] = [{} for _ in range(bands)]
    # 64-bit keys near the top of the range (a float64 copy would merge them), some shared across bands
    pool = [int(x) for x in rng.integers(1 << 62, 1 << 63, size=12, dtype=np.uint64)] + [(1 << 64) - 1]
    pool += [p + 1 for p in pool[:4]]

    def expected(keys):
        for band, key in enumerate(keys):
            if key in reference[band]:
                return reference[band][key]
        return None

    for owner in range(20):
        keys = [pool[int(i)] for i in rng.integers(0, len(pool), size=bands)]
        assert index.first_owner(keys) == expected(keys), owner
        if expected(keys) is None:
            index.add(keys, owner)
            for band, key in enumerate(keys):
                reference[band].setdefault(key, owner)
    assert len(index.keys) > 0                          # some keys were flushed to the sorted array
    for key in pool:
        for band in range(bands):
            query = [key if b == band else 7 for b in range(bands)]
            assert index.first_owner(query) == expected(query)
    assert index.first_owner([max(pool)] * bands) == expected([max(pool)] * bands)
    top = _BandIndex(2, flush_every=1)
    top.add([5, 9], owner=0)
    top.add([(1 << 64) - 1, 7], owner=1)                 # the largest key of the sorted array
    assert top.first_owner([(1 << 64) - 1, 3]) == 1 and top.first_owner([4, 9]) == 0


def test_exact_dedup_of_text_with_lone_surrogates():
    step = ExactDedup(ExactDedupConfig())
    first, second = keyed(step, "bad \ud800 byte")[0], keyed(step, "bad \ud800 byte")[0]
    assert step.decide(first, None) is None
    assert step.decide(second, None) == "exact duplicate of an earlier document"


def test_repeated_lines_stay_unless_lines_is_on_and_count_from_min_line_chars():
    line = "a footer line that is long enough to count"
    plain = ExactDedup(ExactDedupConfig())
    plain.decide(keyed(plain, "first\n" + line)[0], doc("first\n" + line))
    later = doc("second\n" + line)
    assert plain.decide(keyed(plain, later.text)[0], later) is None and later.text == "second\n" + line
    exact = ExactDedup(ExactDedupConfig(lines=True, min_line_chars=len("twelve chars")))
    for text in ("twelve chars\nx", "twelve chars\ny"):
        d = doc(text)
        exact.decide(keyed(exact, text)[0], d)
    assert d.text == "y" and exact.summary()["lines_removed"] == 1     # a line of exactly min_line_chars counts
