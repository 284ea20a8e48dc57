"""The step interface and the mapping from step names in a recipe to step objects.

A step maps one document to a document (possibly changed) or to None (removed), noting
what it saw in a `Record`. Steps run in worker processes, one document at a time.
Deduplication needs to have seen every earlier document, so those steps are `GlobalStep`s:
their `apply` (in a worker) only computes a key, and `decide` (in the main process, in
input order) says whether the document is a duplicate. The result is the same for any
number of workers.
"""

from __future__ import annotations

import re
from typing import Any

from lmforge.data.document import Document


class Record:
    """What one step saw in one document."""
    __slots__ = ("counts", "reason", "key")

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.reason = ""                 # why the document was removed (when apply returns None)
        self.key: Any = None             # GlobalStep: what `decide` needs

    def count(self, what: str, n: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


class Step:
    name = ""

    def apply(self, doc: Document, rec: Record) -> Document | None:
        raise NotImplementedError


class GlobalStep(Step):
    def decide(self, key: Any, doc: Document | None) -> str | None:
        """Return a removal reason, or None to keep (and remember) the document.

        `doc` is the document as the whole step list left it, or None when a later step
        removed it in the worker (its key still counts as seen, as in a sequential run)."""
        raise NotImplementedError

    def summary(self) -> dict:
        """Step-level statistics for stats.json (cluster counts and the like)."""
        return {}


# Lone surrogates are how undecodable bytes arrive (decoded with 'surrogateescape'), or how JSON
# spells half a UTF-16 pair; no UTF-8 text holds one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class FinalCheck(Step):
    """Always last: repairs invalid UTF-8 no normalize step repaired (the output must be valid
    UTF-8) and removes documents that cleaning left shorter than min_chars."""
    name = "final_check"

    def __init__(self, min_chars: int):
        self.min_chars = max(1, min_chars)

    def apply(self, doc, rec):
        if not doc.text.isascii():
            doc.text, n = LONE_SURROGATE.subn("\ufffd", doc.text)
            if n:
                rec.count("invalid_utf8_bytes", n)
        if len(doc.text.strip()) < self.min_chars:
            rec.reason = f"shorter than {self.min_chars} characters"
            return None
        return doc
