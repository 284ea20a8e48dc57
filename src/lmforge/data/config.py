"""The `[data]` section of a recipe: where documents come from and how they are cleaned."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SourceConfig:
    kind: str = "python_docs"        # python_docs | python_source | files | url | hf
    path: str = ""                   # file, directory or glob (files); URL (url); dataset name (hf)
    text_field: str = "text"         # field holding the text in json/jsonl/csv/parquet/hf
    licence: str = ""
    name: str = ""                   # label used in provenance and the data card


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    steps: list[str] = field(default_factory=lambda: ["normalize", "exact_dedup", "pii"])
    min_chars: int = 1
    max_docs: int = 0                # 0 = no limit
