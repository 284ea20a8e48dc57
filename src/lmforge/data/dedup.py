"""Deduplication: exact (whole documents, optionally repeated lines) and near (MinHash LSH).

Both are GlobalSteps: workers compute a hash or a MinHash signature, the main process
decides in input order, so the first copy is the one kept whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from itertools import chain

import numpy as np

from lmforge.data.config import ExactDedupConfig, MinHashConfig
from lmforge.data.steps import GlobalStep, Record

_WORD = re.compile(r"\w+")


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


class ExactDedup(GlobalStep):
    name = "exact_dedup"

    def __init__(self, cfg: ExactDedupConfig):
        self.cfg = cfg
        self.seen: set[int] = set()
        self.copies: Counter[int] = Counter()    # extra copies per kept document
        self.seen_lines: set[int] = set()
        self.lines_removed = 0

    def apply(self, doc, rec: Record):
        rec.key = _hash64(doc.text)
        return doc

    def decide(self, key, doc):
        if key in self.seen:
            self.copies[key] += 1
            return "exact duplicate of an earlier document"
        self.seen.add(key)
        if self.cfg.lines and doc is not None:
            self._drop_seen_lines(doc)
        return None

    def _drop_seen_lines(self, doc) -> None:
        # Runs on the document as the whole step list left it (see docs/data.md).
        kept = []
        for line in doc.text.split("\n"):
            if len(line.strip()) >= self.cfg.min_line_chars:
                h = _hash64(line.strip())
                if h in self.seen_lines:
                    self.lines_removed += 1
                    continue
                self.seen_lines.add(h)
            kept.append(line)
        doc.text = "\n".join(kept)

    def summary(self) -> dict:
        return {"duplicate_clusters": len(self.copies),
                "largest_cluster": max(self.copies.values(), default=0) + (1 if self.copies else 0),
                "lines_removed": self.lines_removed}


_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# ASCII text's \w+ words, lower-cased, by one bytes translation and split: A-Z to a-z and
# every byte that is not a word character to a space.
_ASCII_WORDS = bytes(c + 32 if 65 <= c <= 90 else c if _WORD.match(chr(c)) else 32 for c in range(256))


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """32-bit hashes of the word n-grams of `text` (lower-cased words), computed with numpy.

    crc32 is stable across processes and machines (Python's hash() is not)."""
    if text.isascii():
        words = text.encode("ascii").translate(_ASCII_WORDS).split() or [b""]
    else:
        words = [w.encode() for w in _WORD.findall(text.lower())] or [b""]
    h = np.fromiter(map(zlib.crc32, words), dtype=np.uint64, count=len(words))
    n = min(n, len(h))
    grams = np.zeros(len(h) - n + 1, dtype=np.uint64)
    for k in range(n):
        grams = grams * np.uint64(1_000_003) + h[k:len(h) - n + 1 + k]
    return grams & _MASK32


class _BandIndex:
    """LSH band keys of the kept documents -> ordinal of the document that first had each.

    A dict entry costs about 100 bytes, 1.4 KB per document with 14 bands. Here new keys wait in
    one dict per band until `flush_every` documents were added, then join one sorted array of
    keys with each key's band and owner beside it: 16 bytes an entry."""

    def __init__(self, bands: int, flush_every: int = 16384):
        self.recent: list[dict[int, int]] = [{} for _ in range(bands)]
        self.flush_every, self.added = flush_every, 0
        self.keys = np.empty(0, dtype=np.uint64)
        self.band = np.empty(0, dtype=np.int32)
        self.owner = np.empty(0, dtype=np.int32)

    def first_owner(self, keys: list[int]) -> int | None:
        """The owner of the first of `keys` (one per band, in band order) already indexed, or None."""
        found = self._stored_owners(keys) if len(self.keys) else {}     # {band: owner}
        for band, (recent, key) in enumerate(zip(self.recent, keys)):
            if key in recent:                 # a key is either recent or stored, never both
                found[band] = recent[key]
                break
        return found[min(found)] if found else None

    def _stored_owners(self, keys: list[int]) -> dict[int, int]:
        """{band: owner} for the keys found in the sorted array (usually none)."""
        wanted = np.array(keys, dtype=np.uint64)
        at = np.searchsorted(self.keys, wanted)
        hits = np.flatnonzero(self.keys[np.minimum(at, len(self.keys) - 1)] == wanted)
        found = {}
        for band in hits.tolist():
            for i in range(at[band], len(self.keys)):     # other bands may hold the same key
                if self.keys[i] != wanted[band]:
                    break
                if self.band[i] == band:
                    found[band] = int(self.owner[i])
        return found

    def add(self, keys: list[int], owner: int) -> None:
        for recent, key in zip(self.recent, keys):
            recent[key] = owner
        self.added += 1
        if self.added % self.flush_every == 0:
            self._flush()

    def _flush(self) -> None:
        sizes = [len(recent) for recent in self.recent]
        keys = np.fromiter(chain.from_iterable(self.recent), dtype=np.uint64, count=sum(sizes))
        owner = np.fromiter(chain.from_iterable(r.values() for r in self.recent), dtype=np.int32, count=sum(sizes))
        band = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        order = np.argsort(keys)
        keys, band, owner = keys[order], band[order], owner[order]
        # Merge two sorted runs: each new key goes after the old keys below it and the new ones before it.
        at = np.searchsorted(self.keys, keys) + np.arange(len(keys))
        is_old = np.ones(len(self.keys) + len(keys), dtype=bool)
        is_old[at] = False

        def merged(old_values: np.ndarray, new_values: np.ndarray) -> np.ndarray:
            out = np.empty(len(is_old), dtype=old_values.dtype)
            out[is_old], out[at] = old_values, new_values
            return out

        # One array at a time, so only one old copy is alive beside its merged one.
        self.keys = merged(self.keys, keys)
        self.band = merged(self.band, band)
        self.owner = merged(self.owner, owner)
        self.recent = [{} for _ in self.recent]


class MinHashDedup(GlobalStep):
    """Near-duplicates: word 5-gram shingles, 14 bands x 8 rows (~0.72 Jaccard at 50% recall).

    Each of the bands*rows hash functions is multiply-shift hashing, (a*h + b) >> 32 on 64-bit
    words (no modulo: a few vector operations per shingle); the signature is the minimum over
    shingles. Workers fold each band's rows into one 64-bit key; the main process indexes the
    keys of each band (LSH banding). A document sharing a band key with an earlier kept document
    is removed; as in datatrove and dolma, candidates are not re-checked with exact Jaccard.
    Memory: about 300 bytes per kept document (see _BandIndex).
    """
    name = "minhash"

    def __init__(self, cfg: MinHashConfig, seed: int):
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        num_perm = cfg.bands * cfg.rows
        self.a = rng.integers(1, 1 << 63, size=num_perm, dtype=np.uint64) | np.uint64(1)   # odd
        self.b = rng.integers(0, 1 << 63, size=num_perm, dtype=np.uint64)
        with np.errstate(over="ignore"):
            self.fold = np.uint64(1_000_003) ** np.arange(cfg.rows, dtype=np.uint64)
        self.index = _BandIndex(cfg.bands)
        self.kept_ids: list[str] = []          # by ordinal, as the index stores them
        self.cluster_of: Counter[str] = Counter()

    def apply(self, doc, rec: Record):
        h = shingle_hashes(doc.text, self.cfg.ngram)
        with np.errstate(over="ignore"):          # wrap-around is the point of multiply-shift
            products = np.multiply.outer(h, self.a)
            products += self.b
            # The shift keeps order, so it can follow the minimum: one pass over the products fewer.
            signature = products.min(axis=0) >> _SHIFT32
            bands = (signature.reshape(self.cfg.bands, self.cfg.rows) * self.fold).sum(axis=1)
        rec.key = (doc.id, bands.tolist())
        return doc

    def decide(self, key, doc):
        doc_id, bands = key
        first = self.index.first_owner(bands)
        if first is not None:
            first_id = self.kept_ids[first]
            self.cluster_of[first_id] += 1
            return f"near duplicate of {first_id}"
        self.index.add(bands, len(self.kept_ids))
        self.kept_ids.append(doc_id)
        return None

    def summary(self) -> dict:
        return {"duplicate_clusters": len(self.cluster_of),
                "largest_cluster": max(self.cluster_of.values(), default=0) + (1 if self.cluster_of else 0)}
