"""Statistics of one pipeline run: per source, per step, and of the documents kept.

Everything here is plain numbers and dicts so that shard statistics can be added up
(`add_stats`) and the data card and report can be drawn from them.
"""

from __future__ import annotations

from collections import Counter

HIST_BINS = 40           # bin k holds byte lengths in [2**(k-1), 2**k); bin 0 holds empty texts


def utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class StepStats:
    def __init__(self, name: str):
        self.name = name
        self.docs_in = self.docs_out = self.bytes_in = self.bytes_out = 0
        self.counts: Counter[str] = Counter()

    def to_dict(self, summary: dict) -> dict:
        return {"name": self.name, "docs_in": self.docs_in, "docs_out": self.docs_out,
                "removed": self.docs_in - self.docs_out, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "counts": dict(sorted(self.counts.items())), **summary}


class OutputStats:
    """What the kept documents look like: size, length histogram, licences, languages."""

    def __init__(self):
        self.docs = self.bytes = 0
        self.min_bytes = self.max_bytes = 0
        self.hist = [0] * HIST_BINS
        self.licences: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()

    def add(self, row: dict) -> None:
        n = utf8_len(row["text"])
        self.min_bytes = n if self.docs == 0 else min(self.min_bytes, n)
        self.max_bytes = max(self.max_bytes, n)
        self.docs += 1
        self.bytes += n
        self.hist[min(n.bit_length(), HIST_BINS - 1)] += 1
        self.licences[row.get("licence") or "unspecified"] += 1
        self.languages[row.get("language") or "not identified"] += 1
        self.sources[row["source"]] += 1

    def to_dict(self) -> dict:
        return {"documents": self.docs, "bytes": self.bytes, "min_bytes": self.min_bytes,
                "max_bytes": self.max_bytes, "mean_bytes": round(self.bytes / max(1, self.docs), 1),
                "length_histogram": {"unit": "bytes", "bin_edges": bin_edges(), "counts": self.hist},
                "licences": dict(self.licences.most_common()),
                "languages": dict(self.languages.most_common()),
                "sources": dict(self.sources.most_common())}


def bin_edges() -> list[int]:
    return [0] + [2 ** k for k in range(HIST_BINS)]


def add_stats(a, b):
    """Add two statistics dicts: numbers sum, dicts merge, lists concatenate (maxima stay maxima)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            if k not in out:
                out[k] = v
            elif k in ("largest_cluster", "max_bytes"):
                out[k] = max(out[k], v)
            elif k == "min_bytes":
                out[k] = min(out[k], v)
            else:
                out[k] = add_stats(out[k], v)
        return out
    if isinstance(a, bool) or isinstance(b, bool):
        return a
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a
