"""One document with its provenance, as it flows through the data pipeline."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(slots=True)
class Document:
    id: str
    text: str
    source: str                      # the source's label (SourceConfig.name or kind)
    path: str                        # file path, URL, module name or dataset row
    licence: str
    retrieved_at: str                # ISO-8601 UTC time the text was read
    meta: dict = field(default_factory=dict)   # extras a step adds (language, flags...)

    def to_json(self) -> dict:
        row = {"id": self.id, "text": self.text, "source": self.source, "path": self.path,
               "licence": self.licence, "sha256": sha256_text(self.text),
               "retrieved_at": self.retrieved_at}
        row.update(self.meta)
        return row


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def doc_id(source: str, path: str, index: int) -> str:
    """Stable across runs and machines: the same input position always gets the same id."""
    return hashlib.sha1(f"{source}\x00{path}\x00{index}".encode()).hexdigest()[:16]
