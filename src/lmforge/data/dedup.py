"""Deduplication: exact (whole documents, optionally repeated lines) and near (MinHash LSH).

Both are GlobalSteps: workers compute a hash or a MinHash signature, the main process
decides in input order, so the first copy is the one kept whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

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


class MinHashDedup(GlobalStep):
    """Near-duplicates: word 5-gram shingles, 14 bands x 8 rows (~0.72 Jaccard at 50% recall).

    A document whose signature shares a band with an earlier kept document is removed;
    as in datatrove and dolma, LSH candidates are not re-checked with exact Jaccard.
    """
    name = "minhash"

    def __init__(self, cfg: MinHashConfig, seed: int):
        from datasketch import MinHash, MinHashLSH
        self.cfg = cfg
        self.seed = seed
        self.num_perm = cfg.bands * cfg.rows
        self.template = MinHash(num_perm=self.num_perm, seed=seed)
        self.lsh = MinHashLSH(num_perm=self.num_perm, params=(cfg.bands, cfg.rows))
        self.cluster_of: Counter[str] = Counter()

    def apply(self, doc, rec: Record):
        from datasketch import MinHash
        words = _WORD.findall(doc.text.lower())
        n = self.cfg.ngram
        shingles = [" ".join(words[i:i + n]).encode() for i in range(max(1, len(words) - n + 1))]
        m = MinHash(num_perm=self.num_perm, seed=self.seed, permutations=self.template.permutations,
                    scheme=self.template.scheme)
        m.update_batch(shingles)
        rec.key = (doc.id, m.hashvalues.astype(np.uint64))
        return doc

    def decide(self, key, doc):
        from datasketch import LeanMinHash
        doc_id, hashvalues = key
        m = LeanMinHash(seed=self.seed, hashvalues=hashvalues, scheme=self.template.scheme)
        similar = self.lsh.query(m)
        if similar:
            first = min(similar)
            self.cluster_of[first] += 1
            return f"near duplicate of {first}"
        self.lsh.insert(doc_id, m, check_duplication=False)
        return None

    def summary(self) -> dict:
        return {"duplicate_clusters": len(self.cluster_of),
                "largest_cluster": max(self.cluster_of.values(), default=0) + (1 if self.cluster_of else 0)}
